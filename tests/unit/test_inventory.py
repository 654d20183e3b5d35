"""A market's position: fills net of base fees, backfills ignored, re-anchored to balances."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.inventory import Inventory, base_asset, base_delta
from makerflow.schemas.events import BalanceSnapshot, Fill, Side

V, S = "binance", "BTC/USDT"


def fill(ts: int, side: Side, qty: float, fee: float = 0.0, fee_asset: str = "", tid: str = ""):
    return Fill(
        ts=ts,
        venue=V,
        symbol=S,
        trade_id=tid or f"t{ts}",
        side=side,
        price=100.0,
        qty=qty,
        fee=fee,
        fee_asset=fee_asset,
    )


def balance(ts: int, total: float, asset: str = "BTC") -> BalanceSnapshot:
    return BalanceSnapshot(ts=ts, venue=V, asset=asset, free=total, total=total)


def test_base_asset_and_fee_netting():
    assert base_asset("BTC/USDT") == "BTC" and base_asset("ETH/USDT:USDT") == "ETH"
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        base_asset("BTCUSDT")
    assert base_delta(fill(1, "buy", 1.0, 0.001, "BTC"), "BTC") == pytest.approx(0.999)
    assert base_delta(fill(1, "sell", 1.0, 0.001, "BTC"), "BTC") == pytest.approx(-1.001)
    assert base_delta(fill(1, "buy", 1.0, 0.1, "USDT"), "BTC") == 1.0


def test_fills_before_the_start_move_nothing_even_when_they_come_first():
    inv = Inventory(V, S, "main", 2.0)
    assert inv.on_fill(fill(5, "buy", 1.0)) == 0.0  # held until the start is known
    inv.start(10)
    assert inv.position == 2.0
    inv.on_fill(fill(8, "sell", 1.0))
    assert inv.position == 2.0 and inv.backfill_ignored == 2
    inv.on_fill(fill(10, "buy", 0.5))
    assert inv.position == 2.5


def test_a_balance_that_disagrees_re_anchors_with_a_correction():
    inv = Inventory(V, S, "main", 0.0, tolerance=0.001)
    inv.start(0)
    assert inv.on_balance(balance(1, 10.0)) is None  # fixes the offset: total 10 = position 0
    inv.on_fill(fill(2, "buy", 1.0))
    assert inv.on_balance(balance(3, 11.0)) is None  # agrees
    c = inv.on_balance(balance(4, 10.5))  # half a BTC went somewhere our fills don't show
    assert c is not None and c.asset == "BTC"
    assert (c.before, c.after, c.difference) == (1.0, 0.5, -0.5)
    assert inv.position == 0.5
    assert inv.on_balance(balance(4, 10.0)) is None  # not newer than the anchor
    assert inv.on_balance(balance(5, 10.0, asset="USDT")) is None  # another asset


def test_a_fill_after_the_balance_that_covers_it_counts_once():
    inv = Inventory(V, S, "main", 0.0, tolerance=0.001)
    inv.start(0)
    inv.on_balance(balance(1, 10.0))
    inv.on_fill(fill(5, "buy", 1.0))  # arrives first ...
    assert inv.on_balance(balance(4, 10.0)) is None  # ... a balance from before it: no break
    assert inv.position == 1.0
    assert inv.on_balance(balance(6, 12.0)) is not None  # the venue has 2 more by t=6 ...
    assert inv.position == 2.0
    inv.on_fill(fill(6, "buy", 1.0, tid="late"))  # ... one of which we hear about only now
    assert inv.position == 2.0


@st.composite
def histories(draw: Any) -> tuple[float, float, list[Fill], list[BalanceSnapshot], list[Any]]:
    """Fills after the start and balances consistent with them, and one delivery of both
    streams: any order between the streams (each stream's own order shuffled too)."""
    p0 = draw(st.sampled_from([0.0, 1.0, -2.0]))
    offset = draw(st.sampled_from([0.0, 5.0]))
    n = draw(st.integers(0, 6))
    fills = []
    for i in range(n):
        side = draw(st.sampled_from(["buy", "sell"]))
        fee = draw(st.sampled_from([0.0, 0.25]))
        fills.append(fill(10 + 10 * i, side, 1.0, fee, "BTC" if fee else "", tid=f"f{i}"))
    times = draw(st.lists(st.integers(10, 10 + 10 * n), max_size=4, unique=True))
    balances = []
    for t in sorted(times):
        truth = p0 + sum(base_delta(f, "BTC") for f in fills if f.ts <= t)
        balances.append(balance(t, offset + truth))
    delivery = draw(st.permutations([*fills, *balances, *balances[:1]]))
    truth = p0 + sum(base_delta(f, "BTC") for f in fills)
    return p0, truth, fills, balances, list(delivery)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_the_position_ends_at_the_truth_whichever_stream_comes_first(case):
    p0, truth, _, _, delivery = case
    inv = Inventory(V, S, "main", p0, tolerance=1e-9)
    inv.start(10)
    for ev in delivery:
        if isinstance(ev, Fill):
            inv.on_fill(ev)
        else:
            inv.on_balance(ev)
    assert inv.position == pytest.approx(truth, abs=1e-9)
