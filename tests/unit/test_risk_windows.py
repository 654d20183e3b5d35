"""Risk windows: epoch alignment, sliding vs tumbling, the measures against brute force."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.risk_buckets import NS_PER_S, OrderStats, PriceStats, WindowSpec
from makerflow.operators.risk_exposure import ExposureBook, fill_legs
from makerflow.operators.risk_portfolio import MarketSummary, Portfolio, oracle_deviation_bps
from makerflow.operators.risk_windows import MarketRisk, PnlBook
from makerflow.schemas.events import Fill, IndexPrice, OrderEvent
from tests.risk_support import MARKET, SYMBOL, recorded_ticks, with_jump

S = NS_PER_S


def test_window_spec_is_aligned_to_the_epoch_not_to_the_first_event():
    spec = WindowSpec(60 * S, 5 * S)
    ts = 1_723_161_254_087_891_268  # 2024-08-08 23:54:14.087 UTC
    start, end = spec.window_of(ts)
    assert end % (5 * S) == 0 and start % (5 * S) == 0
    assert end - start == 60 * S
    assert start <= ts < end and end - ts <= 5 * S
    tumbling = WindowSpec.tumbling(60 * S)
    assert tumbling.window_of(ts) == (ts // (60 * S) * 60 * S, (ts // (60 * S) + 1) * 60 * S)


def test_window_spec_refuses_a_slide_that_does_not_divide_the_length():
    with pytest.raises(ValueError, match="not a multiple"):
        WindowSpec(60 * S, 7 * S)
    with pytest.raises(ValueError, match="positive"):
        WindowSpec(0, 0)


def brute_force(points: list[tuple[int, float]], spec: WindowSpec, at: int) -> tuple[float, float]:
    """(sum of squared log returns, largest move) over the window that ends with the bucket of
    ``at``, from scratch."""
    start, end = spec.window_of(at)
    sumsq = 0.0
    inside = []
    for i, (ts, p) in enumerate(points):
        if start <= ts < end:
            inside.append(p)
            if i > 0:
                sumsq += math.log(p / points[i - 1][1]) ** 2
    move = 0.0
    for i in range(len(inside)):
        for j in range(i + 1, len(inside)):
            move = max(move, inside[j] / inside[i] - 1, 1 - inside[j] / inside[i])
    return sumsq, move


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 4 * S), st.floats(90.0, 110.0)), min_size=1, max_size=60
    ),
    buckets=st.integers(1, 6),
)
def test_sliding_window_measures_equal_brute_force(steps, buckets):
    spec = WindowSpec(buckets * 2 * S, 2 * S)
    from makerflow.operators.risk_buckets import BucketedWindow

    w = BucketedWindow(spec, PriceStats, PriceStats.merge)
    ts = 1_700_000_000 * S
    points: list[tuple[int, float]] = []
    prev = None
    for gap, price in steps:
        ts += gap
        assert w.update(ts, lambda s, p=price, q=prev: s.add(p, q))
        points.append((ts, price))
        prev = price
        got = w.value()
        sumsq, move = brute_force(points, spec, ts)
        assert got.sumsq == pytest.approx(sumsq, rel=1e-9, abs=1e-15)
        assert max(got.up, got.down) == pytest.approx(move, rel=1e-9, abs=1e-12)


def test_late_event_beyond_the_window_is_refused():
    spec = WindowSpec(10 * S, 5 * S)
    m = MarketRisk(MARKET, SYMBOL, spec)
    ticks = recorded_ticks(limit=2)
    assert m.on_tick(ticks[1])
    old = ticks[0].__class__(**{**_fields(ticks[0]), "ts": ticks[1].ts - 11 * S})
    assert m.on_tick(old) is False
    assert m.measures().last_price == ticks[1].mid


def _fields(t):
    return {f: getattr(t, f) for f in t.__struct_fields__}


def test_ten_percent_jump_is_seen_on_the_tick_that_makes_it():
    ticks = with_jump(recorded_ticks(limit=3_000), 2_000)
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    moves = []
    for t in ticks:
        m.on_tick(t)
        moves.append(m.measures().largest_move_bps)
    assert max(moves[:2_000]) < 50  # calm recorded data: well under 0.5 %
    assert moves[2_000] == pytest.approx(1_000, abs=20)  # +10 % = 1000 bps on the jump tick
    assert m.measures().realized_vol_bps > 900


def test_tumbling_window_forgets_the_previous_window():
    spec = WindowSpec.tumbling(10 * S)
    m = MarketRisk(MARKET, SYMBOL, spec)
    base = recorded_ticks(limit=1)[0]
    t0 = (base.ts // (10 * S) + 1) * 10 * S
    for ts, mid in [(t0, 100.0), (t0 + 1 * S, 110.0), (t0 + 10 * S, 110.0), (t0 + 11 * S, 111.0)]:
        m.on_tick(base.__class__(**{**_fields(base), "ts": ts, "mid": mid}))
        if ts == t0 + 1 * S:
            assert m.measures().largest_move_bps == pytest.approx(1_000)
    assert m.measures().largest_move_bps == pytest.approx(1 / 110 * 1e4)


def order(ts, cid, status, price=100.0, qty=1.0, filled=0.0):
    return OrderEvent(
        ts=ts,
        venue="binance",
        symbol=SYMBOL,
        client_order_id=cid,
        status=status,
        side="buy",
        price=price,
        qty=qty,
        filled_qty=filled,
    )


def test_order_rates_and_open_notional():
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    t = 1_700_000_000 * S
    m.on_order_event(order(t, "a", "new"))
    m.on_order_event(order(t, "b", "new", price=200.0, qty=2.0))
    m.on_order_event(order(t, "c", "rejected"))
    m.on_order_event(order(t, "d", "new"))
    m.on_order_event(order(t + 1, "d", "canceled"))
    m.on_order_event(order(t + 2, "b", "partial", price=200.0, qty=2.0, filled=0.5))
    got = m.measures()
    assert got.orders_submitted == 4
    assert got.reject_rate == 0.25 and got.cancel_rate == 0.25
    assert got.open_orders == 2
    assert got.open_notional == pytest.approx(100.0 + 200.0 * 1.5)
    m.on_order_event(order(t + 3, "b", "filled", price=200.0, qty=2.0, filled=2.0))
    assert m.measures().open_notional == pytest.approx(100.0)
    assert OrderStats().reject_rate == 0.0


def test_pnl_average_cost_realized_unrealized_fees_and_drawdown():
    p = PnlBook("BTC", "USDT")
    p.on_fill("buy", 100.0, 1.0, 0.1, "USDT")
    p.on_fill("buy", 110.0, 1.0, 0.0, "")
    assert p.avg_cost == pytest.approx(105.0)
    p.on_fill("sell", 120.0, 0.5, 0.0, "")
    assert p.realized == pytest.approx(7.5 - 0.1)
    assert p.unrealized(120.0) == pytest.approx(1.5 * 15.0)
    assert p.drawdown(120.0) == 0.0
    assert p.drawdown(100.0) == pytest.approx(1.5 * 20.0)
    p.on_fill("sell", 100.0, 2.5, 0.001, "BTC")  # flips short 1.0 at 100, fee in base
    assert p.position == pytest.approx(-1.0 - 0.001)
    assert p.avg_cost == 100.0
    assert p.realized == pytest.approx(7.4 + 1.5 * (100.0 - 105.0) - 0.1)


def test_market_marks_to_the_index_when_one_is_mapped():
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    t = recorded_ticks(limit=1)[0]
    m.on_tick(t)
    m.on_fill(
        Fill(
            ts=t.ts,
            venue="binance",
            symbol=SYMBOL,
            trade_id="1",
            side="buy",
            price=t.mid - 10.0,
            qty=2.0,
        )
    )
    assert m.measures().unrealized_pnl == pytest.approx(20.0)
    m.on_index(t.mid + 5.0)
    assert m.measures().unrealized_pnl == pytest.approx(30.0)


def fill(ts, side="buy", qty=0.5, price=60_000.0, fee=0.0, fee_asset="", tid="1"):
    return Fill(
        ts=ts,
        venue="binance",
        symbol=SYMBOL,
        trade_id=tid,
        side=side,
        price=price,
        qty=qty,
        fee=fee,
        fee_asset=fee_asset,
    )


def test_fill_legs_are_base_quote_and_fee():
    legs = fill_legs(fill(1, "sell", 0.5, 60_000.0, fee=3.0, fee_asset="USDT"))
    assert [(g.asset, g.amount) for g in legs] == [
        ("BTC", -0.5),
        ("USDT", 30_000.0),
        ("USDT", -3.0),
    ]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_exposure_does_not_depend_on_arrival_order(seed):
    # Balance at ts=50 already includes the legs up to 50.
    legs = [(ts, 0.1 * (ts % 7 - 3)) for ts in range(10, 100, 10)]
    events = [("leg", ts, a) for ts, a in legs] + [("bal", 50, 2.0), ("bal", 20, 9.0)]
    expected = 2.0 + sum(a for ts, a in legs if ts > 50)
    random.Random(seed).shuffle(events)
    book = ExposureBook()
    for kind, ts, x in events:
        if kind == "leg":
            book.on_leg(ts, x)
        else:
            book.on_balance(ts, x)
    assert book.exposure == pytest.approx(expected)
    assert ExposureBook.restore(book.snapshot()).exposure == pytest.approx(expected)


def test_portfolio_sums_markets_and_tracks_drawdown():
    p = Portfolio()
    p.on_summary(MarketSummary("binance:BTC/USDT", "main", 1, 100.0, 10.0))
    got = p.on_summary(MarketSummary("binance:ETH/USDT", "main", 2, 50.0, 5.0))
    assert (got.pnl, got.drawdown, got.open_notional) == (150.0, 0.0, 15.0)
    got = p.on_summary(MarketSummary("binance:BTC/USDT", "main", 3, -20.0, 0.0))
    assert (got.pnl, got.drawdown) == (30.0, 120.0)


def test_oracle_deviation():
    ip = IndexPrice(
        ts=1, basket="BTC", quote="USD", price=101.0, constituents=(), oracle_price=100.0
    )
    assert oracle_deviation_bps(ip) == pytest.approx(100.0)
    sent = IndexPrice(
        ts=1, basket="BTC", quote="USD", price=101.0, constituents=(), oracle_deviation_bps=-42.0
    )
    assert oracle_deviation_bps(sent) == 42.0
    none = IndexPrice(ts=1, basket="BTC", quote="USD", price=None, constituents=())
    assert oracle_deviation_bps(none) is None


def test_market_risk_snapshot_restores_the_same_measures():
    spec = WindowSpec(60 * S, 5 * S)
    a = MarketRisk(MARKET, SYMBOL, spec)
    ticks = recorded_ticks(limit=500)
    for t in ticks[:300]:
        a.on_tick(t)
    a.on_fill(fill(ticks[300].ts))
    b = MarketRisk(MARKET, SYMBOL, spec)
    b.restore(a.snapshot())
    for t in ticks[300:]:
        a.on_tick(t)
        b.on_tick(t)
    assert a.measures() == b.measures()


# --- every fill and order event counts once (issue 10) -------------------------------------


def test_a_fill_delivered_twice_moves_exposure_once():
    # Found on main: one 0.5 fill seen twice gave 1.0 (Leg.fill_id was never used).
    book = ExposureBook()
    f = fill(10, "buy", 0.5)
    for _ in range(2):
        for leg in fill_legs(f):
            if leg.asset == "BTC":
                book.on_leg(leg.ts, leg.amount, leg.key)
    assert book.exposure == pytest.approx(0.5)
    restored = ExposureBook.restore(book.snapshot())
    for leg in fill_legs(f):
        if leg.asset == "BTC":
            restored.on_leg(leg.ts, leg.amount, leg.key)
    assert restored.exposure == pytest.approx(0.5)


def test_a_fee_in_the_base_asset_is_its_own_leg_and_not_a_duplicate():
    book = ExposureBook()
    for leg in fill_legs(fill(10, "buy", 1.0, fee=0.001, fee_asset="BTC")):
        if leg.asset == "BTC":
            book.on_leg(leg.ts, leg.amount, leg.key)
    assert book.exposure == pytest.approx(0.999)


def test_a_fill_delivered_twice_moves_position_and_pnl_once():
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    t = recorded_ticks(limit=1)[0]
    m.on_tick(t)
    f = fill(t.ts, "buy", 0.5, 60_000.0, fee=3.0, fee_asset="USDT")
    m.on_fill(f)
    m.on_fill(f)
    got = m.measures()
    assert got.position == pytest.approx(0.5) and got.realized_pnl == pytest.approx(-3.0)
    assert got.orders_submitted == 0


def test_repeated_order_events_count_once_in_the_rates():
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    t = 1_700_000_000 * S
    m.on_order_event(order(t, "a", "new"))
    m.on_order_event(order(t, "b", "new"))
    m.on_order_event(order(t + 1, "a", "canceled"))
    m.on_order_event(order(t + 1, "a", "canceled"))  # the private stream repeats itself
    m.on_order_event(order(t + 2, "b", "new"))
    got = m.measures()
    assert got.orders_submitted == 2 and got.cancel_rate == 0.5
    assert got.open_orders == 1


def test_an_order_whose_answer_was_lost_keeps_its_funds_in_open_notional():
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    t = 1_700_000_000 * S
    m.on_order_event(order(t, "u", "unknown", price=100.0, qty=2.0))
    assert m.measures().open_notional == pytest.approx(200.0)
    m.on_order_event(order(t + 1, "u", "ack", price=100.0, qty=2.0))
    m.on_order_event(order(t + 2, "u", "unknown", price=100.0, qty=2.0))  # late: no change
    assert m.measures().open_notional == pytest.approx(200.0)
    # a partial fill heard only from the fill stream shrinks what may still trade
    m.on_fill(
        Fill(
            ts=t + 3,
            venue="binance",
            symbol=SYMBOL,
            trade_id="p1",
            client_order_id="u",
            side="buy",
            price=100.0,
            qty=0.5,
        )
    )
    assert m.measures().open_notional == pytest.approx(150.0)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_exposure_and_open_notional_do_not_depend_on_delivery(data):
    """Fills (with base fees) and order events, duplicated and in any order: the exposure and
    the market's open orders end where the in-order delivery ends."""
    t = 1_700_000_000 * S
    fills = [
        fill(
            t + i,
            "buy" if i % 3 else "sell",
            0.1 * (i + 1),
            fee=0.0001,
            fee_asset="BTC",
            tid=f"t{i}",
        )
        for i in range(data.draw(st.integers(1, 5)))
    ]
    balance_ts = t + data.draw(st.integers(0, 5))
    expected = 1.0 + sum(
        g.amount for f in fills for g in fill_legs(f) if g.asset == "BTC" and g.ts > balance_ts
    )
    events = [order(t, "a", "new"), order(t + 1, "a", "partial", filled=0.5), order(t, "b", "new")]
    events += [order(t + 2, "b", "canceled"), order(t, "c", "unknown", qty=2.0)]
    items = [*fills, *events, ("bal", balance_ts)]
    delivery = data.draw(st.permutations(items + data.draw(st.lists(st.sampled_from(items)))))
    book = ExposureBook()
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    for x in delivery:
        if isinstance(x, Fill):
            for g in fill_legs(x):
                if g.asset == "BTC":
                    book.on_leg(g.ts, g.amount, g.key)
        elif isinstance(x, OrderEvent):
            m.on_order_event(x)
        else:
            book.on_balance(x[1], 1.0)
    assert book.exposure == pytest.approx(expected)
    got = m.measures()
    assert got.open_orders == 2  # a (half filled) and c (answer lost)
    assert got.open_notional == pytest.approx(100.0 * 0.5 + 100.0 * 2.0)


def test_a_backfill_of_trades_from_before_the_run_moves_no_position():
    # The private stream's start-up backfill replays recent trades with their own (older)
    # times; main counted them into risk's position and PnL as if traded now.
    m = MarketRisk(MARKET, SYMBOL, WindowSpec(60 * S, 5 * S))
    ticks = recorded_ticks(limit=2)
    m.on_fill(fill(ticks[0].ts - 60 * S, "buy", 1.0, 50_000.0, tid="old1"))  # before any tick
    m.on_tick(ticks[0])
    m.on_fill(fill(ticks[0].ts - 30 * S, "sell", 0.5, 70_000.0, tid="old2"))  # after it
    got = m.measures()
    assert got.position == 0.0 and got.pnl == 0.0
    m.on_fill(fill(ticks[1].ts, "buy", 0.5, ticks[1].mid, tid="new"))
    assert m.measures().position == pytest.approx(0.5)
