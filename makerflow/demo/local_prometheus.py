"""A local Prometheus for the services demo, when installed: it scrapes every service and
evaluates the project's alert rules, and tells which alerts fired."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from makerflow.broker import free_port
from makerflow.demo.service_processes import Service

RULES = Path(__file__).resolve().parents[2] / "docker" / "prometheus" / "rules"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def prometheus_config(services: list[Service], rules: Path) -> str:
    """Scrape every service each second (one job per service, as docker/prometheus does)
    and evaluate the project's alert rules."""
    jobs = "".join(
        f"  - job_name: makerflow-{s.name}\n    static_configs:\n"
        f'      - targets: ["127.0.0.1:{s.port}"]\n        labels: {{service: {s.name}}}\n'
        for s in services
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}/*.yml\nscrape_configs:\n{jobs}"
    )


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str

    def fired(self, window_s: int = 600) -> list[dict[str, str]]:
        """Every alert that was firing at some moment of the last ``window_s`` seconds."""
        query = urllib.parse.quote(f'max_over_time(ALERTS{{alertstate="firing"}}[{window_s}s])')
        with urllib.request.urlopen(f"{self.url}/api/v1/query?query={query}", timeout=5) as r:
            body = json.loads(r.read())
        return sorted(
            (dict(x["metric"]) for x in body["data"]["result"]),
            key=lambda m: (m.get("alertname", ""), sorted(m.items())),
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_prometheus(services: list[Service], work: Path) -> Prometheus:
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("prometheus is not installed (make system-deps installs it)")
    work.mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    config.write_text(prometheus_config(services, RULES))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(work / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return prom
        except OSError:
            time.sleep(0.3)
    prom.stop()
    raise RuntimeError(f"prometheus did not start (see {work / 'prometheus.log'})")
