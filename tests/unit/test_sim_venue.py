"""The simulated venue: queue position, latencies, partial fills, fees, rejects."""

from __future__ import annotations

import pytest

from makerflow.backtest.venue import Latency, Report, SimVenue, VenueConfig
from makerflow.operators.book import OrderBook
from makerflow.operators.ladder import MarketSpec
from makerflow.schemas.events import BookSnapshot, Fill, OrderEvent, OrderIntent, Trade

MS = 1_000_000
SPEC = MarketSpec(tick_size=0.1, lot_size=0.001, min_qty=0.001, min_notional=5.0)


def book(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]], ts: int = 0
) -> OrderBook:
    b = OrderBook("sim", "BTC/USDT")
    b.apply(
        BookSnapshot(
            ts=ts, venue="sim", symbol="BTC/USDT", seq=1, bids=tuple(bids), asks=tuple(asks)
        )
    )
    return b


def venue(**kw: object) -> SimVenue:
    cfg = VenueConfig(
        entry_latency_ms=kw.pop("entry", 10.0),  # type: ignore[arg-type]
        cancel_latency_ms=kw.pop("cancel", 20.0),  # type: ignore[arg-type]
        report_latency_ms=kw.pop("report", 1.0),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return SimVenue("sim", "BTC/USDT", "main", SPEC, cfg)


def place(
    ts: int, cid: str, side: str, price: float, qty: float, post_only: bool = True
) -> OrderIntent:
    return OrderIntent(
        ts=ts,
        venue="sim",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        post_only=post_only,
    )


def cancel(ts: int, cid: str) -> OrderIntent:
    return OrderIntent(ts=ts, venue="sim", symbol="BTC/USDT", action="cancel", client_order_id=cid)


def trade(ts: int, price: float, qty: float, side: str = "sell", tid: str = "t") -> Trade:
    return Trade(
        ts=ts,
        venue="sim",
        symbol="BTC/USDT",
        trade_id=tid,
        price=price,
        qty=qty,
        side=side,  # type: ignore[arg-type]
    )


def fills(reports: list[Report]) -> list[Fill]:
    return [r.event for r in reports if isinstance(r.event, Fill)]


def statuses(reports: list[Report]) -> list[str]:
    return [r.event.status for r in reports if isinstance(r.event, OrderEvent)]


def test_an_order_behind_five_lots_fills_only_after_five_lots_traded_at_its_price() -> None:
    v = venue()
    b = book([(100.0, 5.0), (99.9, 3.0)], [(100.1, 4.0)])
    arrival = v.send(0, place(0, "a", "buy", 100.0, 1.0))
    assert statuses(v.arrive(arrival, b)) == ["ack"]
    traded = 0.0
    for i, q in enumerate([1.0, 2.0, 1.5, 0.5]):  # 5 lots: all of them ahead of us
        traded += q
        got = v.on_trade(trade(arrival.ts + i + 1, 100.0, q, tid=str(i)))
        assert fills(got) == [], f"filled after only {traded} lots traded"
    got = v.on_trade(trade(arrival.ts + 10, 100.0, 0.4, tid="x"))
    [f] = fills(got)
    assert (f.qty, f.price, f.liquidity) == (0.4, 100.0, "maker")
    assert statuses(got) == ["partial"]
    got = v.on_trade(trade(arrival.ts + 11, 100.0, 2.0, tid="y"))
    assert [f.qty for f in fills(got)] == [0.6]
    assert statuses(got) == ["filled"]


def test_cancels_ahead_move_the_order_up() -> None:
    v = venue(queue_model="risk_averse")
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    v.arrive(v.send(0, place(0, "a", "buy", 100.0, 1.0)), b)
    b.bids.update(100.0, 2.0)  # 3 lots cancelled: with risk_averse only 2 remain ahead
    v.on_book(1, b)
    assert fills(v.on_trade(trade(2, 100.0, 2.0))) == []
    assert [f.qty for f in fills(v.on_trade(trade(3, 100.0, 0.5, tid="b")))] == [0.5]


def test_a_trade_through_the_price_fills_the_whole_order() -> None:
    v = venue()
    b = book([(100.0, 50.0)], [(100.1, 4.0)])
    v.arrive(v.send(0, place(0, "a", "buy", 100.0, 1.0)), b)
    [f] = fills(v.on_trade(trade(5, 99.9, 0.01)))
    assert f.qty == 1.0 and f.price == 100.0


def test_an_order_sent_at_t_cannot_fill_before_t_plus_entry_latency() -> None:
    v = venue(entry=10.0, queue_model="front")
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    t = 1_000 * MS
    arrival = v.send(t, place(t, "a", "buy", 100.0, 1.0))
    assert arrival.ts == t + 10 * MS
    # Before the order reaches the venue there is nothing there to fill.
    assert fills(v.on_trade(trade(t + 9 * MS, 99.0, 5.0))) == []
    v.arrive(arrival, b)
    [f] = fills(v.on_trade(trade(t + 10 * MS, 99.0, 5.0, tid="2")))
    assert f.ts == t + 10 * MS


def test_a_cancel_sent_at_t_leaves_the_order_fillable_until_t_plus_cancel_latency() -> None:
    v = venue(cancel=20.0, queue_model="front")
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    v.arrive(v.send(0, place(0, "a", "buy", 100.0, 2.0)), b)
    t = 500 * MS
    arrival = v.send(t, cancel(t, "a"))
    assert arrival.ts == t + 20 * MS
    [f] = fills(v.on_trade(trade(t + 19 * MS, 100.0, 1.0)))
    assert f.qty == 1.0
    got = v.arrive(arrival, b)
    assert statuses(got) == ["canceled"]
    assert fills(v.on_trade(trade(t + 21 * MS, 99.0, 5.0, tid="2"))) == []


def test_reports_reach_us_after_the_report_latency() -> None:
    v = venue(report=3.0)
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    arrival = v.send(0, place(0, "a", "buy", 100.0, 1.0))
    [ack] = v.arrive(arrival, b)
    assert ack.deliver_ts == arrival.ts + 3 * MS and ack.event.ts == arrival.ts


def test_post_only_that_would_take_is_rejected_and_a_taker_pays_the_taker_fee() -> None:
    v = venue(maker_fee=0.0002, taker_fee=0.0005)
    b = book([(100.0, 5.0)], [(100.1, 0.4), (100.2, 1.0)])
    got = v.arrive(v.send(0, place(0, "a", "buy", 100.1, 1.0)), b)
    assert statuses(got) == ["rejected"]
    assert got[0].event.reason.startswith("post_only")
    got = v.arrive(v.send(0, place(0, "b", "buy", 100.2, 1.0, post_only=False)), b)
    taken = fills(got)
    assert [(f.price, f.qty, f.liquidity) for f in taken] == [
        (100.1, 0.4, "taker"),
        (100.2, 0.6, "taker"),
    ]
    assert taken[0].fee == pytest.approx(100.1 * 0.4 * 0.0005)
    assert statuses(got)[-1] == "filled"


def test_maker_fee_and_rebate() -> None:
    for rate in (0.0002, -0.0001):
        v = venue(maker_fee=rate, queue_model="front")
        b = book([(100.0, 5.0)], [(100.1, 4.0)])
        v.arrive(v.send(0, place(0, "a", "buy", 100.0, 1.0)), b)
        [f] = fills(v.on_trade(trade(1, 100.0, 1.0)))
        assert f.fee == pytest.approx(100.0 * rate) and f.fee_asset == "USDT"


@pytest.mark.parametrize(
    ("price", "qty", "reason"),
    [
        (100.05, 1.0, "invalid_order: PRICE_FILTER"),
        (100.0, 0.0005, "invalid_order: LOT_SIZE"),
        (100.0, 0.0015, "invalid_order: LOT_SIZE"),
        (100.0, 0.02, "min_notional"),
    ],
)
def test_precision_and_minimum_notional_from_the_market_spec(
    price: float, qty: float, reason: str
) -> None:
    v = venue()
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    [r] = v.arrive(v.send(0, place(0, "a", "buy", price, qty)), b)
    assert r.event.status == "rejected" and r.event.reason.startswith(reason)


def test_the_book_moving_through_a_resting_order_fills_it() -> None:
    v = venue()
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    v.arrive(v.send(0, place(0, "a", "sell", 100.1, 1.0)), b)
    b.bids.update(100.1, 2.0)
    [f] = fills(v.on_book(7, b))
    assert (f.side, f.price, f.qty, f.ts) == ("sell", 100.1, 1.0, 7)


def test_recorded_latencies_are_drawn_with_a_seed() -> None:
    samples = (1.0, 2.0, 5.0, 9.0)
    a = [Latency(0.0, samples, "s1").draw() for _ in range(1)]
    one, two = Latency(0.0, samples, "s1"), Latency(0.0, samples, "s1")
    draws = [one.draw() for _ in range(50)]
    assert draws == [two.draw() for _ in range(50)]
    assert set(draws) <= {int(s * MS) for s in samples} and len(set(draws)) > 1
    assert a[0] == draws[0]
    other = Latency(0.0, samples, "s2")
    assert [other.draw() for _ in range(50)] != draws


def test_an_account_cannot_sell_what_it_does_not_hold() -> None:
    v = venue(initial_base=0.5)
    b = book([(100.0, 5.0)], [(100.1, 4.0)])
    [r] = v.arrive(v.send(0, place(0, "a", "sell", 100.2, 1.0)), b)
    assert r.event.status == "rejected" and r.event.reason.startswith("insufficient_balance")


def test_latencies_measured_on_a_live_run() -> None:
    from makerflow.backtest.latency import measured_latencies

    intents = [
        place(1_000 * MS, "a", "buy", 100.0, 1.0),
        place(1_000 * MS, "b", "sell", 101.0, 1.0),
    ]
    intents.append(cancel(2_000 * MS, "a"))
    events = [
        OrderEvent(
            ts=t, venue="sim", symbol="BTC/USDT", client_order_id=c, status=s, side="buy", qty=1.0
        )
        for t, c, s in [
            (1_012 * MS, "a", "ack"),
            (1_030 * MS, "b", "ack"),
            (1_031 * MS, "b", "ack"),  # a repeat: measured once
            (2_007 * MS, "a", "canceled"),
        ]
    ]
    assert measured_latencies(intents, events) == ((12.0, 30.0), (7.0,))
