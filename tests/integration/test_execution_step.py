"""The execution step (``execute_intents``) in running flows against the local exchange with
the unmodified ccxt client: it never stalls the worker, it reconciles with the venue (mass
status), it resolves lost answers, and it never sends a redelivered place again.

Found on main (issue 10): ``execute_intents`` waited on ``fut.result()`` with no timeout, so a
slow venue stalled the worker that also runs risk and quoting; open-order reconciliation was
off by default and only alerted, orphans were never cancelled, fills the private stream
missed were never found.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSource, run_main

from makerflow.exchange import BTCUSDT, DEFAULT_API_KEY, DEFAULT_SECRET, ETHUSDT, LocalExchange
from makerflow.schemas.events import Alert, BalanceSnapshot, Fill, OrderEvent, OrderIntent
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig, execute_intents
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
ORDER = "/api/v3/order"


class _Part(StatefulSourcePartition[object, None]):
    def __init__(self, items: list[tuple[float, object]], end_s: float) -> None:
        self.t0 = time.monotonic()
        self.items = sorted(items, key=lambda x: x[0])
        self.end_s = end_s

    def next_batch(self) -> list[object]:
        now = time.monotonic() - self.t0
        out = []
        while self.items and self.items[0][0] <= now:
            item = self.items.pop(0)[1]
            # A callable makes its item when due (an intent stamped during the run).
            out.append(item() if callable(item) else item)
        if not out and not self.items and now >= self.end_s:
            raise StopIteration
        return out

    def next_awake(self) -> datetime:
        due = self.items[0][0] if self.items else self.end_s
        left = max(due - (time.monotonic() - self.t0), 0.0)
        return datetime.now(UTC) + timedelta(seconds=left)

    def snapshot(self) -> None:
        return None


class Scheduled(FixedPartitionedSource[object, None]):
    """Emits each item ``at`` seconds after the start; ends at ``end_s`` (a live input that
    stays open, unlike TestingSource)."""

    def __init__(self, items: list[tuple[float, object]], end_s: float) -> None:
        self.items = items
        self.end_s = end_s

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Part:
        return _Part(list(self.items), self.end_s)


def place(cid, symbol="BTC/USDT", price=61000.0, qty=0.001, side="buy", **kw):
    return OrderIntent(
        ts=time.time_ns(),
        venue="binance",
        symbol=symbol,
        action="place",
        client_order_id=cid,
        side=side,
        price=price,
        qty=qty,
        reference=kw.pop("reference", price),
        **kw,
    )


def cancel(cid, symbol="BTC/USDT"):
    return OrderIntent(
        ts=time.time_ns(), venue="binance", symbol=symbol, action="cancel", client_order_id=cid
    )


def config(ex, **kw):
    base = dict(url=ex.url, rate_limit_ms=1, timeout_ms=3_000, sweep_interval_s=0.3)
    return ExchangeSinkConfig(**(base | kw))


def our_orders(ex, symbol="BTCUSDT"):
    return ex.call(
        lambda s: sorted((o.client_order_id, o.status) for o in s.engine.all_orders("main", symbol))
    )


def order_events(ex, schedule, end_s, **cfg) -> list[OrderEvent]:
    """The order events of one run of the execution step, its intents sent on ``schedule``
    (seconds, intent or a callable making it) and its input ending at ``end_s``."""
    events: list[OrderEvent] = []
    flow = Dataflow("execution")
    intents = op.input("intents", flow, Scheduled(schedule, end_s))
    out = execute_intents("execute", intents, config(ex, **cfg), credentials=CREDS)
    op.inspect("events", out.orders, lambda _s, e: events.append(e))
    run_main(flow)
    return events


def test_a_slow_market_delays_neither_other_markets_nor_other_steps():
    with LocalExchange(speed=0, replay=REPLAY, markets=(BTCUSDT, ETHUSDT)) as ex:
        ex.advance(1)
        # The venue holds BTC's place 1.5 s before processing it (then answers in time).
        ex.inject("late", path=ORDER, method="POST", delay_s=1.5)
        seen: list[str] = []
        flow = Dataflow("slow_market")
        intents = op.input(
            "intents",
            flow,
            Scheduled(
                [
                    (0.0, place("mf-slow-btc")),
                    (0.2, place("mf-fast-eth", symbol="ETH/USDT", price=2500.0, qty=0.01)),
                ],
                end_s=2.5,
            ),
        )
        markers = op.input("markers", flow, Scheduled([(i / 10, i) for i in range(25)], 2.5))
        out = execute_intents("execute", intents, config(ex), credentials=CREDS)
        op.inspect("acks", out.orders, lambda _s, e: seen.append(f"{e.status}:{e.client_order_id}"))
        op.inspect("other_step", markers, lambda _s, _m: seen.append("marker"))
        run_main(flow)
        assert our_orders(ex) == [("mf-slow-btc", "NEW")]
        assert our_orders(ex, "ETHUSDT") == [("mf-fast-eth", "NEW")]

    btc, eth = seen.index("ack:mf-slow-btc"), seen.index("ack:mf-fast-eth")
    # On main the worker waited for BTC's answer: ETH's ack and every marker came after it.
    assert eth < btc, seen
    assert "marker" in seen[eth:btc], "the other step ran while BTC's place was in flight"


def test_the_sweep_cancels_orphans_finds_missed_fills_and_resolves_vanished_orders():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)

        async def before_the_run():
            client = ex.client(rateLimit=1)
            try:
                for cid, price in (("mf-orphan-1", 60000.0), ("manual-1", 60001.0)):
                    await client.create_order(
                        "BTC/USDT", "limit", "buy", 0.001, price, {"clientOrderId": cid}
                    )
                await client.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, 60002.0, {"clientOrderId": "mf-gone-1"}
                )
                await client.cancel_order(None, "BTC/USDT", {"clientOrderId": "mf-gone-1"})
            finally:
                await client.close()

        asyncio.run(before_the_run())
        # The private stream told us mf-gone-1 was open; its cancel never reached us.
        stale = OrderEvent(
            ts=time.time_ns(),
            venue="binance",
            symbol="BTC/USDT",
            client_order_id="mf-gone-1",
            status="ack",
            side="buy",
            price=60002.0,
            qty=0.001,
        )
        # Through the ask at once: its fill is never reported to this step but by the sweep.
        taker = place("mf-take-1", price=61840.0, qty=0.001, post_only=False, reference=61837.0)
        flow = Dataflow("sweep")
        intents = op.input("intents", flow, Scheduled([(0.0, taker)], end_s=1.5))
        updates = op.input("updates", flow, TestingSource([stale]))
        out = execute_intents("execute", intents, config(ex), updates=updates, credentials=CREDS)
        got: dict[str, list] = {"orders": [], "fills": [], "balances": [], "alerts": []}
        for name in got:
            op.inspect(name, getattr(out, name), lambda _s, x, n=name: got[n].append(x))
        run_main(flow)
        on_venue = our_orders(ex)

    assert on_venue == [
        ("manual-1", "NEW"),  # not our prefix: never touched
        ("mf-gone-1", "CANCELED"),
        ("mf-orphan-1", "CANCELED"),
        ("mf-take-1", "FILLED"),
    ]
    orders = {(e.client_order_id, e.status) for e in got["orders"]}
    assert {("mf-take-1", "filled"), ("mf-orphan-1", "canceled"), ("mf-gone-1", "canceled")} <= (
        orders
    )
    assert not any(cid == "manual-1" for cid, _ in orders)
    [fill] = got["fills"]
    assert isinstance(fill, Fill) and fill.client_order_id == "mf-take-1" and fill.qty == 0.001
    [alert] = got["alerts"]
    assert isinstance(alert, Alert) and alert.name == "OrphanOrder"
    assert alert.labels == {"client_order_id": "mf-orphan-1", "action": "cancel"}
    assert {b.asset for b in got["balances"] if isinstance(b, BalanceSnapshot)} == {"BTC", "USDT"}


def test_a_lost_answer_in_the_flow_is_unknown_then_what_the_venue_says():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        ex.inject("lost", path=ORDER, method="POST", delay_s=0.0)
        ex.inject("timeout", count=2, path=ORDER, method="GET", delay_s=0.6)
        # Stamped during the run: an intent from before it would be looked up first.
        lost = [(0.0, lambda: place("mf-lost-1"))]
        events = order_events(ex, lost, 0.5, timeout_ms=400, sweep_interval_s=None)
        assert our_orders(ex) == [("mf-lost-1", "NEW")]
    assert [(e.client_order_id, e.status) for e in events] == [
        ("mf-lost-1", "unknown"),
        ("mf-lost-1", "ack"),
    ]


def test_a_redelivered_place_is_never_sent_again():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        schedule = [(0.0, place("mf-re-1")), (0.3, cancel("mf-re-1")), (0.6, place("mf-re-1"))]
        events = order_events(ex, schedule, 1.0)
        # Binance frees the id of a closed order: a re-send would have placed it again.
        assert our_orders(ex) == [("mf-re-1", "CANCELED")]
    assert [(e.client_order_id, e.status) for e in events] == [
        ("mf-re-1", "ack"),
        ("mf-re-1", "canceled"),
    ]


def test_a_restarted_execution_re_reading_its_intents_places_nothing_twice(look_up=True):
    """At-least-once: a restarted execution service re-reads intents it already executed
    (from its last committed offset, or a replayed epoch) with a fresh order state. The run
    before placed A and saw it canceled; Binance would take A's id again."""
    a, a_cancel = place("mf-rr-a"), cancel("mf-rr-a")

    def run(ex, schedule):
        got = order_events(ex, schedule, 0.6, look_up_replays=look_up)
        return [(e.client_order_id, e.status) for e in got]

    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        first = run(ex, [(0.0, a), (0.2, a_cancel)])
        # The restart: A's event time is now before the run; B is new.
        second = run(ex, [(0.0, a), (0.1, a_cancel), (0.2, place("mf-rr-b"))])
        assert our_orders(ex) == [("mf-rr-a", "CANCELED"), ("mf-rr-b", "NEW")]
    assert first == [("mf-rr-a", "ack"), ("mf-rr-a", "canceled")]
    # The re-read place is answered with the venue's word on the order the run before placed.
    assert second[0] == ("mf-rr-a", "canceled")
    assert ("mf-rr-b", "ack") in second


@pytest.mark.parametrize(
    "sweep_s, end_s",
    [(0.3, 1.5), (60.0, 0.8)],
    ids=["the_next_sweep", "the_final_sweep_at_the_end_of_input"],
)
def test_an_order_the_venue_expired_at_creation_unheard_is_expired_by_a_sweep(sweep_s, end_s):
    """Found by a 20 s chaos demo: it ended believing one order open that the venue had
    expired at creation, its expiry event lost. Here the step has no private stream at all
    (every event from the venue is lost): only a sweep can tell. The next periodic sweep
    does; and a clean end of input sweeps once more, so a run that ends before its next
    sweep (the demo) still ends agreeing with the venue."""
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        # Answered NEW, then expired by the venue at once.
        ex.inject("expire", path=ORDER, method="POST", delay_s=0.0)
        placed = [(0.0, lambda: place("mf-exp-1"))]
        events = order_events(ex, placed, end_s, sweep_interval_s=sweep_s)
        assert our_orders(ex) == [("mf-exp-1", "EXPIRED")]
    # On main the final-sweep case ended at "ack": the pipeline believed the order open.
    assert [(e.client_order_id, e.status) for e in events] == [
        ("mf-exp-1", "ack"),
        ("mf-exp-1", "expired"),
    ]
