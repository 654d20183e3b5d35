"""``makerflow demo --services`` on a short slice: every service of the pipeline in its own
``bytewax.run`` process on the embedded broker. Each one starts and serves ``/metrics``; the
run trades (fills) and balances (every reconciliation window OK); every process is stopped at
the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from makerflow.demo.report import print_report
from makerflow.demo.services import SERVICES, run_services_demo

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_as_services_trades_and_reconciles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_services_demo(tmp_path, seconds=40.0, grace_s=3.0)

    assert [s.name for s in result.services] == list(SERVICES)
    assert all(s.metrics_ok for s in result.services), [
        (s.name, s.log.read_text()[-2000:]) for s in result.services if not s.metrics_ok
    ]
    # Every process was stopped and waited for.
    assert all(s.exit_code is not None for s in result.services)
    assert not [s.name for s in result.services if _alive(s.proc.pid)]

    summary = print_report(tmp_path)
    out = capsys.readouterr().out
    assert summary["intents_by_action"]["place"] > 0
    assert summary["fills"] > 0, "no fill in the services run"
    assert summary["recon_windows"] > 0
    assert summary["recon_by_status"] == {"OK": summary["recon_windows"]}
    assert {s["name"] for s in summary["services"]} == set(SERVICES)
    assert "services (one bytewax.run process each)" in out
    recorded = json.loads((tmp_path / "services.json").read_text())
    assert all(s["served_metrics"] for s in recorded["services"])
