"""Each trade once on the fills topic and file, whichever path brought it first."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st

from makerflow.operators.fill_dedup import FirstFills, unique_fills
from makerflow.schemas.events import Fill


def fill(tid: str, symbol: str = "BTC/USDT") -> Fill:
    return Fill(ts=1, venue="binance", symbol=symbol, trade_id=tid, side="buy", price=1.0, qty=1.0)


@given(st.lists(st.sampled_from("abcdef"), max_size=40))
def test_any_redelivery_keeps_the_first_copy_of_each_trade(ids: list[str]) -> None:
    logic = FirstFills()
    kept = [t for t in ids if logic.first(fill(t))]
    assert kept == list(dict.fromkeys(ids))
    resumed = FirstFills(seen=logic.snapshot())
    assert not any(resumed.first(fill(t)) for t in ids)


def test_the_operator_drops_repeats_per_market_and_keeps_other_markets_apart() -> None:
    got: list[Fill] = []
    flow = Dataflow("dedup")
    src = op.input(
        "in",
        flow,
        TestingSource([fill("1"), fill("1"), fill("1", "ETH/USDT"), fill("2"), fill("1")]),
    )
    op.output("out", unique_fills("unique", src), TestingSink(got))
    run_main(flow)
    assert sorted((f.symbol, f.trade_id) for f in got) == [
        ("BTC/USDT", "1"),
        ("BTC/USDT", "2"),
        ("ETH/USDT", "1"),
    ]
