"""The demo's services as processes: started under the Bytewax runner, waited for until each
serves ``/metrics``, stopped with the runner's Ctrl-C (then killed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from makerflow.broker import free_port


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_ok: bool = False
    exit_code: int | None = None


def _metrics_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return r.status == 200 and b"# HELP" in r.read()
    except OSError:
        return False


def start_services(names: Iterable[str], env: Mapping[str, str], logs: Path) -> list[Service]:
    """One Bytewax runner process a service (``makerflow.flows.<name>:flow``), each with its
    own ``/metrics`` port and log file."""
    logs.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        port = free_port()
        log = logs / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"makerflow.flows.{name}:flow"],
            env={**env, "MAKERFLOW_METRICS_PORT": str(port)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.append(Service(name, port, proc, log))
    return out


def wait_for_metrics(services: list[Service], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for s in services:
            if not s.metrics_ok and s.proc.poll() is None:
                s.metrics_ok = _metrics_up(s.port)
        dead = [s for s in services if s.proc.poll() is not None]
        if dead:
            raise RuntimeError(
                "service(s) exited at start: " + ", ".join(f"{s.name} (see {s.log})" for s in dead)
            )
        if all(s.metrics_ok for s in services):
            return
        time.sleep(0.5)
    late = [s.name for s in services if not s.metrics_ok]
    raise RuntimeError(f"no /metrics from {late} after {timeout_s:g} s")


def stop_services(services: list[Service], timeout_s: float = 8.0) -> None:
    """SIGINT (the runner's Ctrl-C) to each process, SIGKILL to what is left after
    ``timeout_s``; every process is waited for."""
    for s in services:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for s in services:
        try:
            s.exit_code = s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.exit_code = s.proc.wait(timeout=10)
