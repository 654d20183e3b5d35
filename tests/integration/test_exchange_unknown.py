"""Lost answers, Retry-After and time-to-live at the exchange sink, with the unmodified ccxt
client against the local exchange and its faults (answer lost after the order was placed,
a place that lands after the client gave up, 429/418 with Retry-After, 503s).

Each "found on main" finding of issue 10 for the sink is one test here; on main each fails:
a lost answer with failing look-ups was reported ``rejected`` while the order rested, a late
landing after a re-send placed a second order, 429s were retried after 10/20 ms whatever
Retry-After said, and a minutes-old intent was still sent.
"""

from __future__ import annotations

import asyncio
import random

import ccxt.async_support as ccxt
import pytest

from makerflow import metrics
from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.schemas.events import OrderIntent
from makerflow.sinks.exchange import Credentials, ExchangeExecutor, ExchangeSinkConfig
from makerflow.venue import classify_error, may_be_duplicate_id
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
TS = 1_723_161_254_087_000_000
ORDER = "/api/v3/order"


class Clock:
    """The sink's wall clock, moved by the test (ns)."""

    def __init__(self, now: int = TS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def place(cid, price=61000.0, qty=0.01, side="buy", ts=TS):
    return OrderIntent(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side=side,
        price=price,
        qty=qty,
        reference=61837.0,
    )


def cancel(cid):
    return OrderIntent(
        ts=TS, venue="binance", symbol="BTC/USDT", action="cancel", client_order_id=cid
    )


@pytest.fixture
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        yield ex


def config(ex, **kw):
    base = dict(
        url=ex.url,
        timeout_ms=400,
        retry_backoff_s=0.01,
        rate_limit_ms=1,
        intent_ttl_ms=None,
        recv_window_ms=1_000,
        retry_seed=7,
    )
    return ExchangeSinkConfig(**(base | kw))


class Sleeps:
    """The retry wait: records each delay, waits only a moment (the venue's side of a
    Retry-After is not enforced in these tests)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, s: float) -> None:
        self.delays.append(s)
        await asyncio.sleep(0)


def orders_on_exchange(ex):
    return ex.call(
        lambda s: [(o.client_order_id, o.status) for o in s.engine.all_orders("main", "BTCUSDT")]
    )


async def resolve_until(executor, clock, *, step_ns=1_000_000_000, rounds=20):
    """Look unknown orders up (the sink's background resolver, driven by hand) until one
    resolves; the clock moves ``step_ns`` per round."""
    for _ in range(rounds):
        clock.now += step_ns
        got = await executor.resolve_unknown()
        if got:
            return got
        await asyncio.sleep(0.05)
    return []


def test_a_lost_answer_whose_look_ups_fail_is_unknown_never_rejected(exchange):
    # The venue places the order and the connection drops; the look-ups time out too.
    exchange.inject("lost", path=ORDER, method="POST", delay_s=0.0)
    exchange.inject("timeout", count=3, path=ORDER, method="GET", delay_s=0.6)
    clock = Clock()

    async def go():
        ex = ExchangeExecutor(config(exchange), credentials=CREDS, sleep=Sleeps(), clock=clock)
        try:
            first = await ex.execute_many([place("lost-1")])
            assert orders_on_exchange(exchange) == [("lost-1", "NEW")]
            later = await resolve_until(ex, clock)
            return first, later, ex.sent, dict(ex.unknown)
        finally:
            await ex.close()

    first, later, sent, unknown = asyncio.run(go())
    # On main: "rejected" (network) while the order rested: the quoter would replace it.
    assert [(e.client_order_id, e.status) for e in first] == [("lost-1", "unknown")]
    assert first[0].reason.startswith("exchange_unavailable:")
    assert (first[0].qty, first[0].price) == (0.01, 61000.0)
    assert [(e.client_order_id, e.status) for e in later] == [("lost-1", "ack")]
    assert sent == 1 and unknown == {}
    assert orders_on_exchange(exchange) == [("lost-1", "NEW")]


def test_a_place_that_lands_after_the_look_up_is_neither_placed_twice_nor_left_live(exchange):
    # The request waits 1 s at the venue before it is processed: the client times out at
    # 0.4 s, looks the order up (nothing yet) — and then the order appears.
    exchange.inject("late", path=ORDER, method="POST", delay_s=1.0)
    clock = Clock()

    async def go():
        ex = ExchangeExecutor(
            config(exchange, recv_window_ms=5_000), credentials=CREDS, sleep=Sleeps(), clock=clock
        )
        try:
            placed = await ex.execute_many([place("late-1")])
            # The quoter gives up on the order while it is unknown: cancel it.
            canceled = await ex.execute_many([cancel("late-1")])
            later = await resolve_until(ex, clock, step_ns=100_000_000, rounds=40)
            return placed, canceled, later, ex.sent
        finally:
            await ex.close()

    placed, canceled, later, sent = asyncio.run(go())
    assert [e.status for e in placed] == ["unknown"]
    # Not on the venue yet: still unknown (its slot stays taken), never "rejected".
    assert [e.status for e in canceled] == ["unknown"]
    # It landed: found by client id, and the cancel asked for meanwhile is carried out.
    assert [(e.client_order_id, e.status) for e in later] == [
        ("late-1", "ack"),
        ("late-1", "canceled"),
    ]
    # On main the place was re-sent after the empty look-up and acked, the cancel closed
    # that one, and the late original then rested on the venue with nobody tracking it.
    assert orders_on_exchange(exchange) == [("late-1", "CANCELED")]
    # One place (never re-sent), the cancel that found nothing, the cancel once it landed.
    assert sent == 3


def test_a_lost_place_the_venue_never_got_is_rejected_after_its_receive_window(exchange):
    # 503 before processing: the venue has nothing, but the client cannot know that.
    exchange.inject("unavailable", count=5, path=ORDER, method="POST")
    clock = Clock()

    async def go():
        ex = ExchangeExecutor(config(exchange), credentials=CREDS, sleep=Sleeps(), clock=clock)
        try:
            first = await ex.execute_many([place("np-1")])
            clock.now += 500_000_000  # within the 1 s window (+ 2 x 0.4 s timeouts)
            early = await ex.resolve_unknown()
            clock.now += 2_000_000_000
            late = await ex.resolve_unknown()
            return first, early, late, ex.sent
        finally:
            await ex.close()

    first, early, late, sent = asyncio.run(go())
    assert [e.status for e in first] == ["unknown"] and sent == 1
    assert early == []
    [ev] = late
    assert ev.status == "rejected" and ev.reason.startswith("not_placed:")
    assert orders_on_exchange(exchange) == []


def test_retries_wait_for_retry_after_with_seeded_jitter(exchange):
    exchange.inject("rate_limit", count=2, path=ORDER, method="POST", retry_after_s=1)

    async def go(seed, cid):
        sleeps = Sleeps()
        ex = ExchangeExecutor(
            config(exchange), credentials=CREDS, sleep=sleeps, rng=random.Random(seed)
        )
        try:
            events = await ex.execute_many([place(cid)])
            return events, sleeps.delays
        finally:
            await ex.close()

    events, delays = asyncio.run(go(1, "ra-1"))
    assert [e.status for e in events] == ["ack"]
    # On main: 0.01 then 0.02 s, whatever the venue asked for.
    assert len(delays) == 2
    assert all(1.0 <= d <= 1.5 for d in delays), delays
    assert delays[0] != delays[1], "jitter spreads the retries"
    # The same seed gives the same waits (deterministic tests and benchmarks).
    exchange.inject("rate_limit", count=2, path=ORDER, method="POST", retry_after_s=1)
    _, again = asyncio.run(go(1, "ra-2"))
    assert again == delays


def test_a_ban_longer_than_the_sink_waits_gives_up_without_retrying(exchange):
    exchange.inject("ban", path=ORDER, method="POST", retry_after_s=120)

    async def go():
        ex = ExchangeExecutor(config(exchange), credentials=CREDS, sleep=Sleeps())
        try:
            return await ex.execute_many([place("ban-1")]), ex.sent
        finally:
            await ex.close()

    [ev], sent = asyncio.run(go())
    assert sent == 1
    assert ev.status == "rejected" and ev.reason.startswith("rate_limited:")
    assert orders_on_exchange(exchange) == []


def test_cancels_and_cancel_alls_wait_for_retry_after_and_a_cancel_waits_out_a_ban(exchange):
    # A cancel is the only way to take an order off the venue: unlike a place (above), it
    # waits out even a Retry-After longer than ``max_retry_after_s`` (30 s).
    exchange.inject("rate_limit", path=ORDER, method="DELETE", retry_after_s=1)
    exchange.inject("ban", path=ORDER, method="DELETE", retry_after_s=120)
    exchange.inject("rate_limit", path="/api/v3/openOrders", method="DELETE", retry_after_s=2)
    cancel_all = OrderIntent(ts=TS, venue="binance", symbol="BTC/USDT", action="cancel_all")

    async def go():
        sleeps = Sleeps()
        ex = ExchangeExecutor(
            config(exchange, confirm_cancel_all=False),
            credentials=CREDS,
            sleep=sleeps,
            rng=random.Random(3),
        )
        try:
            placed = await ex.execute_many([place("rc-1"), place("rc-2", price=60990.0)])
            gone = await ex.execute_many([cancel("rc-1")])
            rest = await ex.execute_many([cancel_all])
            return placed + gone + rest, sleeps.delays, ex.sent
        finally:
            await ex.close()

    events, delays, sent = asyncio.run(go())
    assert [(e.client_order_id, e.status) for e in events] == [
        ("rc-1", "ack"),
        ("rc-2", "ack"),
        ("rc-1", "canceled"),
        ("rc-2", "canceled"),
    ]
    # Seeded jitter on top of each Retry-After: 1 s, the 120 s ban, then the cancel-all's 2 s.
    assert len(delays) == 3, delays
    assert 1.0 <= delays[0] <= 1.5 and 120.0 <= delays[1] <= 180.0 and 2.0 <= delays[2] <= 3.0
    assert sent == 2 + 3 + 2
    assert sorted(orders_on_exchange(exchange)) == [("rc-1", "CANCELED"), ("rc-2", "CANCELED")]


def test_an_intent_older_than_its_time_to_live_is_dropped_with_a_reason(exchange):
    counter = metrics.ORDER_REJECTS.labels(venue="binance", reason="expired_intent")
    before = counter._value.get()
    clock = Clock(TS + 3_000_000_000)

    async def go():
        ex = ExchangeExecutor(config(exchange, intent_ttl_ms=2_000), credentials=CREDS, clock=clock)
        try:
            old = await ex.execute_many([place("old-1", ts=TS)])
            fresh = await ex.execute_many([place("new-1", ts=TS + 2_000_000_000)])
            # Cancels never expire: removing risk is never blocked.
            gone = await ex.execute_many([cancel("new-1")])
            return old, fresh, gone, ex.sent
        finally:
            await ex.close()

    old, fresh, gone, sent = asyncio.run(go())
    [ev] = old
    assert ev.status == "rejected" and ev.reason.startswith("expired_intent:")
    assert "3000 ms old" in ev.reason
    assert [e.status for e in fresh] == ["ack"] and [e.status for e in gone] == ["canceled"]
    assert sent == 2
    assert counter._value.get() == before + 1
    assert [o[0] for o in orders_on_exchange(exchange)] == ["new-1"]


def test_a_redelivered_place_of_a_closed_order_is_not_placed_again(exchange):
    # Binance frees a client id once its order is closed: a re-sent intent would place a
    # second order. The sink answers it with the venue's word on the first.

    async def go():
        ex = ExchangeExecutor(config(exchange), credentials=CREDS, sleep=Sleeps())
        try:
            a = await ex.execute_many([place("re-1"), cancel("re-1")])
            b = await ex.execute_many([place("re-1")])
            return a, b, ex.sent
        finally:
            await ex.close()

    a, b, sent = asyncio.run(go())
    assert [e.status for e in a] == ["ack", "canceled"]
    assert [(e.client_order_id, e.status) for e in b] == [("re-1", "canceled")]
    assert sent == 2
    assert orders_on_exchange(exchange) == [("re-1", "CANCELED")]


def test_a_duplicate_client_id_is_told_by_its_class_not_its_message(exchange):
    """Binance's "Duplicate order sent." is code -2010, which ccxt raises as a plain
    InvalidOrder; a post-only refusal is its subclass OrderImmediatelyFillable."""

    async def go():
        client = exchange.client(rateLimit=1)
        try:
            await client.create_order(
                "BTC/USDT", "limit", "buy", 0.01, 61000.0, {"clientOrderId": "dup-1"}
            )
            errors = []
            for price, cid in ((61000.0, "dup-1"), (61840.0, "po-1")):
                try:
                    await client.create_order(
                        "BTC/USDT",
                        "limit",
                        "buy",
                        0.01,
                        price,
                        {"clientOrderId": cid, "postOnly": True},
                    )
                except ccxt.BaseError as exc:
                    errors.append(exc)
            return errors
        finally:
            await client.close()

    dup, post_only = asyncio.run(go())
    assert type(dup) is ccxt.InvalidOrder and may_be_duplicate_id(dup)
    assert isinstance(post_only, ccxt.OrderImmediatelyFillable)
    assert not may_be_duplicate_id(post_only)
    assert classify_error(dup).outcome == classify_error(post_only).outcome == "refused"
