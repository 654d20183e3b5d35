"""The Grafana dashboard's queries against a real Prometheus scraping real services.

The ticks and risk services run under ``makerflow run`` on a broker of their own, the
recorded BTC/USDT data is replayed into ``md.book`` / ``md.trades``, and a real Prometheus
(Debian package ``prometheus``) scrapes both under the job names of
``docker/prometheus/prometheus.yml``. Every query of ``docker/grafana/dashboards/*.json``
must then answer without error, name only metrics makerflow exports, and the market-data
panels must show data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from makerflow import metrics
from makerflow.broker import Broker, free_port, wait_for_port
from makerflow.kafka_admin import ensure_topics
from makerflow.schemas.topics import TOPICS
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow

DASHBOARDS = sorted((REPO / "docker" / "grafana" / "dashboards").glob("*.json"))
RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def exported_metrics() -> set[str]:
    """Every series name makerflow's metrics produce (counters' ``_total``, histograms'
    ``_bucket``/``_sum``/``_count``), plus Prometheus's own ``up``."""
    names = {"up"}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for fam in obj.describe():
                names.add(fam.name)
                if fam.type == "counter":
                    names.add(fam.name + "_total")
                if fam.type == "histogram":
                    names.update(fam.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((panel["title"], target["expr"]))
    return out


def test_the_dashboard_names_only_exported_metrics():
    assert DASHBOARDS, "no dashboard JSON in docker/grafana/dashboards"
    exported = exported_metrics()
    used: set[str] = set()
    for _, expr in queries():
        used.update(re.findall(r"\b(makerflow_\w+|up)\b(?=\s*[{\[(]|\s*\)|\s*$|\s)", expr))
    assert {"makerflow_market_data_age_seconds", "makerflow_kill_switch_engaged"} <= used
    assert used <= exported, f"the dashboard uses metrics no service exports: {used - exported}"
    # Every topic the issue asks for has a panel.
    titles = " | ".join(t for t, _ in queries()).lower()
    for wanted in (
        "market-data age",
        "ticks per second",
        "index",
        "quotes",
        "orders by outcome",
        "fills",
        "inventory",
        "pnl",
        "kill switch",
        "reconciliation breaks",
        "dead letters",
        "consumer lag",
    ):
        assert wanted in titles, wanted


def _prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not on PATH: `make system-deps` installs it")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[str, int]]:
    """ticks and risk under ``makerflow run`` on a broker of their own, fed the recording;
    yields their metrics ports by job name."""
    with Broker(log_path=tmp_path / "tansu.log") as b:
        ensure_topics([b.bootstrap], list(TOPICS))
        ports = {"makerflow-ticks": free_port(), "makerflow-risk": free_port()}
        procs = []
        try:
            for job, port in ports.items():
                service = job.removeprefix("makerflow-")
                env = {
                    **os.environ,
                    "PYTHONPATH": str(REPO),
                    "MAKERFLOW_BROKERS": b.bootstrap,
                    "MAKERFLOW_METRICS_PORT": str(port),
                    "MAKERFLOW_METRICS_ADDR": "127.0.0.1",
                    "MAKERFLOW_WALL_CLOCK": "0",
                }
                log = open(tmp_path / f"{service}.log", "wb")  # noqa: SIM115
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "makerflow.cli", "run", service],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            for port in ports.values():
                wait_for_port("127.0.0.1", port, timeout=60)
            replay = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "makerflow.cli",
                    "replay",
                    "--input",
                    str(RECORDING),
                    "--brokers",
                    b.bootstrap,
                ],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert replay.returncode == 0, replay.stderr.decode()
            yield ports
        finally:
            for p in procs:
                _stop(p)


@pytest.fixture
def prometheus(services: dict[str, int], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{p}']\n"
        for job, p in services.items()
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 500ms\nscrape_configs:\n{jobs}")
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            _prometheus_bin(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=5):
                    break
            except OSError:  # 503 while the TSDB opens
                assert time.monotonic() < deadline, "Prometheus never got ready"
                time.sleep(0.25)
        yield base
    finally:
        _stop(proc)


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:  # a bad query is a 400 with the error in the body
        return dict(json.loads(exc.read()))


def test_every_dashboard_query_answers_on_live_services(prometheus: str) -> None:
    ticks_rate = 'sum by (job) (rate(makerflow_events_out_total{step=~".*out_ticks"}[1m]))'
    deadline = time.monotonic() + 60
    while not query(prometheus, ticks_rate)["data"]["result"]:
        assert time.monotonic() < deadline, "Prometheus never saw the ticks service emit ticks"
        time.sleep(0.5)
    answered: dict[str, int] = {}
    for title, expr in queries():
        body = query(prometheus, expr)
        assert body["status"] == "success", f"{title}: {expr}: {body.get('error')}"
        answered[expr] = len(body["data"]["result"])
    # The panels these two services feed show data.
    assert answered[ticks_rate] == 1
    assert answered["max by (job, step) (makerflow_event_time_lag_seconds)"] >= 2
    assert answered['up{job=~"makerflow-.+"}'] == 2
    assert answered["sum by (job, topic) (makerflow_kafka_consumer_lag)"] >= 2
