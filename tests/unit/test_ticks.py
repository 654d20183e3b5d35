"""Ticks logic: statistics, when ticks are emitted, feed health, bad input."""

from __future__ import annotations

import math

import msgspec
import pytest

from makerflow.operators.book import OrderBook
from makerflow.operators.market_ticks import MarketTicks, RollingVwap, top_stats
from makerflow.operators.ticks import TicksConfig, load_ticks_config
from makerflow.schemas.events import (
    Bar,
    BookDelta,
    BookSnapshot,
    DataQuality,
    DeadLetter,
    Tick,
    Trade,
)
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

S = 1_000_000_000
MS = 1_000_000
SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def snap(seq=10, ts=S, bids=((100.0, 3.0), (99.0, 1.0)), asks=((101.0, 1.0), (102.0, 1.0))):
    return BookSnapshot(ts=ts, venue="v", symbol="S", seq=seq, bids=bids, asks=asks)


def delta(first, last=None, ts=2 * S, bids=(), asks=()):
    return BookDelta(
        ts=ts,
        venue="v",
        symbol="S",
        first_seq=first,
        last_seq=first if last is None else last,
        bids=bids,
        asks=asks,
    )


def trade(tid, ts, price=100.5, qty=1.0):
    return Trade(ts=ts, venue="v", symbol="S", trade_id=tid, price=price, qty=qty, side="buy")


def of(out, kind):
    return [x for x in out if isinstance(x, kind)]


def test_top_stats() -> None:
    mid, micro, spread, imb = top_stats(100.0, 3.0, 101.0, 1.0, 4.0, 2.0)
    assert mid == 100.5
    # More size on the bid pulls the microprice toward the ask.
    assert micro == pytest.approx((100.0 * 1.0 + 101.0 * 3.0) / 4.0)
    assert spread == pytest.approx(1.0 / 100.5 * 10_000)
    assert imb == pytest.approx((4.0 - 2.0) / 6.0)


def test_ticks_only_when_the_top_changes_and_on_every_trade() -> None:
    m = MarketTicks("v", "S", TicksConfig(imbalance_levels=2))
    first = of(m.on_event(snap()), Tick)
    assert len(first) == 1 and first[0].reason == "book"
    t = first[0]
    assert (t.bid, t.bid_qty, t.ask, t.ask_qty) == (100.0, 3.0, 101.0, 1.0)
    assert t.imbalance == pytest.approx((4.0 - 2.0) / 6.0)
    # A change below the top: no tick.
    assert of(m.on_event(delta(11, bids=((99.0, 5.0),))), Tick) == []
    # A size change at the top: a tick.
    (t2,) = of(m.on_event(delta(12, bids=((100.0, 2.0),))), Tick)
    assert t2.bid_qty == 2.0 and t2.imbalance == pytest.approx((7.0 - 2.0) / 9.0)
    (t3,) = of(m.on_event(trade("1", 3 * S, price=101.0, qty=2.0)), Tick)
    assert (t3.reason, t3.last_price, t3.last_qty, t3.vwap) == ("trade", 101.0, 2.0, 101.0)
    (t4,) = of(m.on_event(trade("2", 4 * S, price=100.0, qty=2.0)), Tick)
    assert t4.vwap == pytest.approx(100.5)


def test_trades_without_a_book_make_no_ticks_but_still_count() -> None:
    m = MarketTicks("v", "S", TicksConfig())
    assert m.on_event(trade("1", S)) == []
    (t,) = of(m.on_event(snap(ts=2 * S)), Tick)
    assert t.last_price == 100.5 and t.vwap == 100.5


def test_rolling_vwap_forgets_old_buckets() -> None:
    v = RollingVwap(window_ns=3 * S, bucket_ns=S)
    v.add(0, 100.0, 1.0)
    v.add(S, 110.0, 1.0)
    assert v.value() == pytest.approx(105.0)
    v.add(3 * S, 120.0, 2.0)  # buckets 1..3 kept, bucket 0 gone
    assert v.value() == pytest.approx((110.0 + 240.0) / 3.0)


def test_duplicate_trade_is_reported_and_not_counted_twice() -> None:
    m = MarketTicks("v", "S", TicksConfig())
    m.on_event(snap())
    m.on_event(trade("7", 2 * S, qty=1.0))
    out = m.on_event(trade("7", 2 * S, qty=1.0))
    assert [q.kind for q in of(out, DataQuality)] == ["duplicate"]
    assert of(out, Tick) == []
    bars = of(m.flush(), Bar)
    assert bars[0].trades == 1


def test_silent_market_is_reported_in_event_time() -> None:
    m = MarketTicks("v", "S", TicksConfig(silent_after_ms=5_000))
    m.on_event(snap(ts=S))
    assert of(m.on_event(delta(11, ts=5 * S, bids=((100.0, 4.0),))), DataQuality) == []
    out = of(m.on_event(delta(12, ts=20 * S, bids=((100.0, 5.0),))), DataQuality)
    assert [(q.kind, q.ts) for q in out] == [("silent", 20 * S)]
    assert "no data for 15.000 s" in out[0].detail
    assert m.quality_counts()["silent"] == 1


def test_bad_values_become_dead_letters_and_leave_the_book_alone() -> None:
    m = MarketTicks("v", "S", TicksConfig())
    m.on_event(snap())
    top = m.book.top()
    for bad in (
        delta(11, bids=((math.nan, 1.0),)),
        delta(11, asks=((101.0, -1.0),)),
        delta(11, asks=((math.inf, 1.0),)),
        delta(12, 11),
        trade("x", 3 * S, price=0.0),
        trade("y", 3 * S, qty=math.nan),
    ):
        (dl,) = m.on_event(bad)
        assert isinstance(dl, DeadLetter)
        assert dl.step == "ticks" and dl.raw and dl.reason
    assert m.book.top() == top and m.book.seq == 10
    assert m.counts["dead_letter"] == 6


def test_gap_stops_ticks_until_a_snapshot() -> None:
    m = MarketTicks("v", "S", TicksConfig(reorder_window=0))
    m.on_event(snap())
    out = m.on_event(delta(15, bids=((100.5, 1.0),)))
    assert [q.kind for q in of(out, DataQuality)] == ["gap"]
    assert of(m.on_event(trade("1", 3 * S)), Tick) == []
    out = m.on_event(snap(seq=20, ts=4 * S))
    assert [q.kind for q in of(out, DataQuality)] == ["resync"]
    assert len(of(out, Tick)) == 1


def test_ticks_on_real_data_match_a_reference_book() -> None:
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    m = MarketTicks("binance", "BTC/USDT", TicksConfig())
    ref = OrderBook("binance", "BTC/USDT")
    ticks = 0
    for ev in events:
        out = m.on_event(ev)
        if not isinstance(ev, Trade):
            ref.apply(ev)
        for t in of(out, Tick):
            ticks += 1
            assert (t.bid, t.bid_qty, t.ask, t.ask_qty) == ref.top()
            assert t.bid < t.mid < t.ask and t.spread_bps > 0 and -1 <= t.imbalance <= 1
            assert t.bid <= t.microprice <= t.ask
        assert of(out, DataQuality) == [] and of(out, DeadLetter) == []
    n_trades = sum(isinstance(e, Trade) for e in events)
    assert ticks > n_trades


def test_state_round_trip_continues_identically() -> None:
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)][:3000]
    cfg = TicksConfig(bar_lengths_ms=(1_000, 60_000))
    a = MarketTicks("binance", "BTC/USDT", cfg)
    for ev in events[:1500]:
        a.on_event(ev)
    state = a.state()
    b = MarketTicks.from_state("binance", "BTC/USDT", cfg, state)
    for ev in events[1500:]:
        assert a.on_event(ev) == b.on_event(ev)
    assert a.flush() == b.flush()


def test_config_from_toml(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[quoting]\nx = 1\n\n[ticks]\ndepth = 50\nbar_lengths_ms = [1000, 60000]\n")
    cfg = load_ticks_config(p)
    assert cfg.depth == 50 and cfg.bar_lengths_ms == (1000, 60000)
    p.write_text("[ticks]\ndepht = 50\n")
    with pytest.raises(ValueError, match="depht"):
        load_ticks_config(p)
    assert load_ticks_config(None) == TicksConfig()
    with pytest.raises((ValueError, msgspec.ValidationError)):
        TicksConfig(bar_lengths_ms=(0,))
