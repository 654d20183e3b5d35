"""The embedded demo end to end: replayed real data paper-traded against the local exchange
and chain through the all-in-one flow, with execution's verdicts looped back to quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.demo.report import print_report
from makerflow.demo.runner import run_demo
from makerflow.schemas.events import (
    IndexPrice,
    OrderEvent,
    OrderIntent,
    ReconReport,
    RiskState,
    Tick,
)
from makerflow.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def test_demo_trades_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_demo(tmp_path, seconds=20.0, grace_s=3.0)
    ticks = read_jsonl(tmp_path / "ticks.jsonl", Tick)
    assert len(ticks) > 200
    assert all(t.bid < t.ask for t in ticks)

    index = read_jsonl(tmp_path / "index.jsonl", IndexPrice)
    btc = [i for i in index if i.basket == "BTC" and i.price is not None]
    assert btc, "the BTC basket was never priced"
    # Every basket has real data behind it: BTC only (the demo has no ETH market), priced
    # from the traded spot market, the recorded USDT-M and COIN-M futures and the DEX.
    assert {i.basket for i in index} == {"BTC"}

    # Some price used all four (not necessarily the last: as the run ends the live spot
    # stream stops first, and a loaded machine may let it go stale before the others).
    def four_venues(i: IndexPrice) -> bool:
        venues = {v.venue for c in i.constituents for v in c.used}
        cex = {"binance", "binanceusdm", "binancecoinm"} <= venues
        return cex and any(v.startswith("uniswap") for v in venues)

    assert any(four_venues(i) for i in btc)
    # The index sits inside the replayed market's spread neighbourhood (< 50 bps from mid).
    assert abs(btc[-1].price / ticks[-1].mid - 1) < 0.005  # type: ignore[operator]

    intents = read_jsonl(tmp_path / "intents.jsonl", OrderIntent)
    placed = [i for i in intents if i.action == "place"]
    assert placed and all(i.client_order_id and i.client_order_id.startswith("mf-") for i in placed)

    # The exchange acknowledged our orders through the unmodified ccxt client...
    executions = read_jsonl(tmp_path / "executions.jsonl", OrderEvent)
    acks = [e for e in executions if e.status == "ack"]
    assert acks
    # Quoting off the venue's own streams keeps post-only orders off the other side of the
    # book: refusals stay the exception.
    assert len([e for e in executions if e.status == "rejected"]) < len(acks)
    # ...and the private stream reported them back.
    events = read_jsonl(tmp_path / "order_events.jsonl", OrderEvent)
    placed_ids = {i.client_order_id for i in placed}
    assert placed_ids & {e.client_order_id for e in events}

    # Calm market: nothing halts; every reconciliation window balances.
    states = (
        read_jsonl(tmp_path / "risk_states.jsonl", RiskState)
        if (tmp_path / "risk_states.jsonl").exists()
        else []
    )
    assert not [s for s in states if s.status == "HALTED"]
    reports = read_jsonl(tmp_path / "recon_reports.jsonl", ReconReport)
    assert reports and all(r.status == "OK" for r in reports)

    assert result.counts["ticks"] == len(ticks)
    summary = print_report(tmp_path)
    assert summary["ticks"] == len(ticks)
    assert summary["recon_by_status"] == {"OK": summary["recon_windows"]}
    out = capsys.readouterr().out
    assert "what each part did" in out and "HTML report:" in out
    assert (tmp_path / "report.html").exists()
