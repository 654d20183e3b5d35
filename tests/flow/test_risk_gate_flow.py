"""The risk gate operator in a flow, on one and two workers: states reach every market their
scope covers; a place that comes before risk's first word waits for it, in order; what risk
never answers is refused, never dropped."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from makerflow.operators.risk_gate import GateConfig, risk_gate
from makerflow.schemas.events import OrderEvent, OrderIntent, RiskState
from makerflow.schemas.scopes import scopes_of_market

T0 = 1_723_161_254_000_000_000
MARKETS = ("binance:BTC/USDT", "binance:ETH/USDT")


def place(cid: str, symbol: str = "BTC/USDT", ts: int = T0 + 1) -> OrderIntent:
    return OrderIntent(
        ts=ts,
        venue="binance",
        symbol=symbol,
        action="place",
        client_order_id=cid,
        side="buy",
        price=1.0,
        qty=1.0,
    )


def run(events: list, run_flow, cfg: GateConfig | None = None):
    flow = Dataflow("gate")
    src = op.input("in", flow, TestingSource(events, batch_size=50))
    intents = op.filter_map("i", src, lambda x: x if isinstance(x, OrderIntent) else None)
    states = op.filter_map("s", src, lambda x: x if isinstance(x, RiskState) else None)
    out = risk_gate("gate", intents, states, cfg or GateConfig(markets=MARKETS))
    passed: list[OrderIntent] = []
    refused: list[OrderEvent] = []
    op.output("passed", out.passed, TestingSink(passed))
    op.output("refused", out.rejected, TestingSink(refused))
    run_flow(flow)
    return passed, refused


def test_wide_scopes_reach_every_market_and_a_global_halt_stops_both(run_flow):
    active = [
        RiskState(ts=T0, scope=s, status="ACTIVE")
        for m in ("BTC/USDT", "ETH/USDT")
        for s in scopes_of_market("binance", m)
    ]
    halt = RiskState(ts=T0 + 5, scope="global", status="HALTED", reasons=("drawdown",))
    events = [
        *active,
        place("a"),
        place("b", "ETH/USDT"),
        *[RiskState(ts=T0, scope="global", status="ACTIVE")] * 48,  # ends the batch
        halt,
        place("c", ts=T0 + 6),
        place("d", "ETH/USDT", ts=T0 + 6),
    ]
    passed, refused = run(events, run_flow)
    assert sorted(i.client_order_id for i in passed) == ["a", "b"]
    assert sorted(e.client_order_id for e in refused) == ["c", "d"]
    assert all(e.reason.startswith("risk_gate:halted: global is HALTED: drawdown") for e in refused)


def test_places_before_risk_spoke_wait_in_order_and_unanswered_ones_are_refused(run_flow):
    cancel = OrderIntent(
        ts=T0 + 2, venue="binance", symbol="BTC/USDT", action="cancel", client_order_id="a"
    )
    states = [
        RiskState(ts=T0, scope=s, status="ACTIVE") for s in scopes_of_market("binance", "BTC/USDT")
    ]
    events = [place("a"), cancel, place("x", "ETH/USDT"), *states]
    passed, refused = run(events, run_flow)
    assert [(i.client_order_id, i.action) for i in passed] == [("a", "place"), ("a", "cancel")]
    assert [e.client_order_id for e in refused] == ["x"]
    # global, account and USDT states reached ETH/USDT too; asset:ETH was never heard.
    assert refused[0].reason.startswith("risk_gate:unknown: no risk state heard for asset:ETH")
