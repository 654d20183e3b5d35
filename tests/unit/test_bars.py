"""OHLCV bars in epoch-aligned event-time windows."""

from __future__ import annotations

import pytest

from makerflow.operators.bars import BarBuilder
from makerflow.schemas.events import Trade

S = 1_000_000_000
T0 = 1_723_161_600 * S  # 2024-08-09 00:00:00 UTC, a whole minute


def trade(ts: int, price: float, qty: float = 1.0, tid: str = "") -> Trade:
    return Trade(
        ts=ts, venue="v", symbol="S", trade_id=tid or str(ts), price=price, qty=qty, side="buy"
    )


def test_windows_align_to_the_epoch_not_to_the_first_trade() -> None:
    b = BarBuilder("v", "S", 60 * S)
    b.add(trade(T0 + 17 * S, 100.0))
    b.add(trade(T0 + 59 * S, 101.0))
    bars, _ = b.add(trade(T0 + 61 * S, 102.0))
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.start_ts, bar.end_ts, bar.ts) == (T0, T0 + 60 * S, T0 + 60 * S)
    assert bar.start_ts % (60 * S) == 0


def test_ohlcv_values() -> None:
    b = BarBuilder("v", "S", 60 * S)
    for i, (p, q) in enumerate([(100.0, 1.0), (105.0, 2.0), (95.0, 0.5), (101.0, 1.5)]):
        b.add(trade(T0 + i * S, p, q))
    bar = b.flush()[0]
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 105.0, 95.0, 101.0)
    assert bar.volume == pytest.approx(5.0)
    assert bar.notional == pytest.approx(100 + 210 + 47.5 + 151.5)
    assert bar.trades == 4


def test_grace_lets_a_slightly_late_trade_in_and_refuses_a_later_one() -> None:
    b = BarBuilder("v", "S", 60 * S, grace_ns=2 * S)
    b.add(trade(T0 + 10 * S, 100.0))
    assert b.advance(T0 + 61 * S) == []  # within grace: the first minute is still open
    _, accepted = b.add(trade(T0 + 59 * S, 90.0))
    assert accepted
    closed = b.advance(T0 + 62 * S)
    assert [c.low for c in closed] == [90.0]
    bars, accepted = b.add(trade(T0 + 30 * S, 80.0))
    assert not accepted and bars == [] and b.late == 1


def test_quiet_minutes_make_no_bars_and_each_length_is_independent() -> None:
    one = BarBuilder("v", "S", 60 * S)
    five = BarBuilder("v", "S", 300 * S)
    out: dict[int, list] = {60: [], 300: []}
    for b, key in ((one, 60), (five, 300)):
        for ts in (T0 + 5 * S, T0 + 250 * S):
            out[key] += b.add(trade(ts, 1.0))[0]
        out[key] += b.flush()
    assert [x.start_ts for x in out[60]] == [T0, T0 + 240 * S]
    assert [x.trades for x in out[300]] == [2]


def test_state_round_trip() -> None:
    b = BarBuilder("v", "S", 60 * S, grace_ns=S)
    b.add(trade(T0 + 5 * S, 1.0))
    c = BarBuilder("v", "S", 60 * S, grace_ns=S)
    c.restore(b.state())
    for x in (b, c):
        x.add(trade(T0 + 6 * S, 3.0))
    assert b.flush() == c.flush()
