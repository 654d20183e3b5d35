"""``makerflow demo`` as it runs by default, on a short slice: the quoter trades, then every
replayed market falls 10 %; the kill switch halts, the venue confirms none of our orders
remain, the alert is raised, and nothing of ours trades afterwards. The printed summary says
so."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.demo.progress import Progress
from makerflow.demo.report import print_report
from makerflow.demo.runner import Crash, demo_config, run_demo
from makerflow.schemas.events import Alert, Fill, OrderEvent, OrderIntent, RiskState
from makerflow.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.slow

NS = 1_000_000_000


def test_demo_crash_halts_confirms_flat_alerts_and_trades_nothing_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The quoter warms up for 10 s of data; the crash comes after it has quoted a while.
    progress = Progress(45.0)
    run_demo(
        tmp_path, seconds=45.0, grace_s=3.0, crash=Crash(at_s=32.0, pct=-10.0), progress=progress
    )

    states = [s for s in read_jsonl(tmp_path / "risk_states.jsonl", RiskState) if not s.heartbeat]
    halts = [s for s in states if s.status == "HALTED"]
    assert halts, f"no halt; states: {[(s.scope, s.status) for s in states]}"
    market = [s for s in halts if s.scope == "market:binance:BTC/USDT"]
    assert market and any("largest move" in r for r in market[0].reasons)
    # The futures only feed the index: risk halts none of them.
    assert {s.scope for s in halts} <= {"market:binance:BTC/USDT", "global", "asset:BTC"}
    halt_ts = min(s.since for s in halts)

    alerts = read_jsonl(tmp_path / "alerts.jsonl", Alert)
    names = [a.name for a in alerts]
    assert "KillSwitchEngaged" in names
    flat = [a for a in alerts if a.name == "KillSwitchFlat"]
    assert flat, f"no confirmation of flat; alerts: {names}"
    assert all(a.labels["confirmed"] == "true" for a in flat)
    assert "the venue lists none of our orders" in flat[0].message
    assert "KillSwitchCancelFailed" not in names

    # Nothing placed after the halt reached the exchange, and nothing of ours traded once
    # the venue confirmed we were flat.
    intents = read_jsonl(tmp_path / "intents.jsonl", OrderIntent)
    late = {i.client_order_id for i in intents if i.action == "place" and i.ts > halt_ts}
    executions = read_jsonl(tmp_path / "executions.jsonl", OrderEvent)
    assert [e for e in executions if e.status == "ack" and e.ts < halt_ts], "never quoted"
    assert not [e for e in executions if e.client_order_id in late and e.status != "rejected"]
    events = read_jsonl(tmp_path / "order_events.jsonl", OrderEvent)
    assert not [e for e in events if e.client_order_id in late]
    flat_by = halt_ts + max(int(a.labels["breach_to_flat_ms"]) for a in flat) * 1_000_000
    fills = read_jsonl(tmp_path / "fills.jsonl", Fill)
    assert not [f for f in fills if f.ts > flat_by + NS // 10]

    # The summary a newcomer reads says the same.
    summary = print_report(tmp_path)
    out = capsys.readouterr().out
    assert summary["intents_by_action"]["place"] > 0
    assert summary["executions_by_status"]["ack"] > 0
    assert summary["fills"] > 0, "no fill before the crash"
    limit = demo_config("http://unused").quoting.defaults.position_limit
    assert abs(summary.get("inventory_btc", 0.0)) <= limit + 1e-9
    assert summary["recon_windows"] > 0
    assert summary["recon_by_status"] == {"OK": summary["recon_windows"]}
    assert summary["halts"] >= 1 and summary["kill_switch"]
    assert summary["venue_open_orders"] == 0
    assert summary["orders_after_halt"] == 0
    assert "confirmed flat" in out and "HALTED market:binance:BTC/USDT" in out
    assert (tmp_path / "report.html").exists()
    # The progress line followed the run.
    line = progress.line(45.0)
    assert f"fills {summary['fills_buy'] + summary['fills_sell']}" in line and "HALTED" in line
