"""The exchange sink against the local exchange: rounding, guards, idempotent retries through
injected 429s, 5xx and timeouts, rejects with reasons, cancel-all, dry run, the operator."""

from __future__ import annotations

import asyncio
import logging

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.operators.guards import GuardLimits
from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.exchange import (
    Credentials,
    ExchangeExecutor,
    ExchangeSinkConfig,
    execute_intents,
)
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
TS = 1_723_161_254_087_000_000


def place(cid, price=61000.0, qty=0.01, side="buy", reference=61837.0, venue="binance", **kw):
    return OrderIntent(
        ts=TS,
        venue=venue,
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side=side,
        price=price,
        qty=qty,
        reference=reference,
        **kw,
    )


def cancel(cid):
    return OrderIntent(
        ts=TS, venue="binance", symbol="BTC/USDT", action="cancel", client_order_id=cid
    )


CANCEL_ALL = OrderIntent(ts=TS, venue="binance", symbol="BTC/USDT", action="cancel_all")


@pytest.fixture
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        yield ex


def config(ex, **kw):
    # Recorded event times (2024): no time-to-live here; tests of it set one.
    base = dict(
        url=ex.url, timeout_ms=400, retry_backoff_s=0.01, rate_limit_ms=1, intent_ttl_ms=None
    )
    return ExchangeSinkConfig(**(base | kw))


async def _no_sleep(_s):
    await asyncio.sleep(0)


def execute(ex, intents, real_sleep=False, **kw):
    async def go():
        sleep = asyncio.sleep if real_sleep else _no_sleep
        executor = ExchangeExecutor(config(ex, **kw), credentials=CREDS, sleep=sleep)
        try:
            return await executor.execute_many(intents), executor.sent
        finally:
            await executor.close()

    return asyncio.run(go())


def orders_on_exchange(ex):
    return ex.call(
        lambda s: [
            (o.client_order_id, o.status, f"{o.price:.2f}", f"{o.orig_qty:.5f}")
            for o in s.engine.all_orders("main", "BTCUSDT")
        ]
    )


def test_place_is_rounded_to_tick_and_lot_and_acked(exchange):
    events, sent = execute(exchange, [place("a-1", price=61000.004, qty=0.0123456)])
    assert sent == 1
    [ev] = events
    assert (ev.status, ev.client_order_id, ev.price, ev.qty) == ("ack", "a-1", 61000.0, 0.01234)
    assert ev.exchange_order_id is not None
    assert orders_on_exchange(exchange) == [("a-1", "NEW", "61000.00", "0.01234")]


def test_local_rejects_send_nothing(exchange):
    intents = [
        place("g-1", price=61000.0, qty=5.0),  # 305 000 USDT > max notional
        place("g-2", price=55000.0),  # 1 100 bps from the reference
        place("g-3", qty=0.00005),  # 3 USDT < the market's 5 USDT minimum
        place("g-4", qty=float("nan")),
        place("g-5", venue="okx"),
    ]
    events, sent = execute(exchange, intents)
    assert sent == 0 and orders_on_exchange(exchange) == []
    reasons = [
        ev.reason.split(":")[0] + ":" + ev.reason.split(":")[1]
        if ev.reason.startswith("guard")
        else ev.reason.split(":")[0]
        for ev in events
    ]
    assert [ev.status for ev in events] == ["rejected"] * 5
    assert reasons == [
        "guard:max_order_notional",
        "guard:max_distance",
        "min_notional",
        "malformed",
        "malformed",
    ]
    assert "reached the sink of binance/main" in events[4].reason


def test_rate_limits_are_retried_without_duplicates(exchange):
    exchange.inject("rate_limit", count=2, path="/api/v3/order", method="POST")
    events, _ = execute(exchange, [place("r-1")])
    assert [ev.status for ev in events] == ["ack"]
    assert orders_on_exchange(exchange) == [("r-1", "NEW", "61000.00", "0.01000")]


@pytest.mark.parametrize("kind", ["server_error", "unavailable", "timeout"])
def test_lost_answer_after_the_order_landed_never_places_twice(exchange, kind):
    # The venue places the order but the answer is a 5xx or never comes in time.
    exchange.inject(kind, path="/api/v3/order", method="POST", after=True, delay_s=0.8)
    events, sent = execute(exchange, [place("x-1")])
    assert sent == 1, "the sink must find the order instead of re-sending it"
    assert [(ev.status, ev.client_order_id) for ev in events] == [("ack", "x-1")]
    assert orders_on_exchange(exchange) == [("x-1", "NEW", "61000.00", "0.01000")]


def test_persistent_failures_become_rejects_with_reasons(exchange):
    exchange.inject("rate_limit", count=10, path="/api/v3/order", method="POST")
    [ev], _ = execute(exchange, [place("p-1")], max_attempts=3)
    assert ev.status == "rejected" and ev.reason.startswith("rate_limited:")
    exchange.call(lambda s: s.faults.clear())
    exchange.inject("unavailable", count=10, path="/api/v3/order", method="POST")
    [ev], sent = execute(exchange, [place("p-2")], max_attempts=3)
    # A 5xx may have been acted on (Binance: "execution status unknown"): never rejected,
    # never re-sent; how it resolves is in test_exchange_unknown.py.
    assert sent == 1
    assert ev.status == "unknown" and ev.reason.startswith("exchange_unavailable:")
    exchange.call(lambda s: s.faults.clear())
    exchange.inject("insufficient_funds", path="/api/v3/order", method="POST")
    [ev], sent = execute(exchange, [place("p-3")])
    assert sent == 1, "insufficient funds is final: no retry"
    assert ev.status == "rejected" and ev.reason.startswith("insufficient_funds:")
    assert "insufficient balance" in ev.reason
    [ev], _ = execute(exchange, [place("p-4", price=61840.0, qty=0.01, reference=61840.0)])
    assert ev.status == "rejected" and ev.reason.startswith("invalid_order:")
    assert "immediately match" in ev.reason
    assert orders_on_exchange(exchange) == []


def test_real_insufficient_funds_and_duplicate_ids(exchange):
    guards = GuardLimits(max_order_notional=1e9)
    events, _ = execute(
        exchange,
        [place("f-1", qty=2.0), place("f-2", qty=0.01), place("f-2", qty=0.01)],
        guards=guards,
    )
    assert events[0].status == "rejected" and events[0].reason.startswith("insufficient_funds")
    # The same client order id twice: one order on the venue, both intents answered by it.
    assert [(e.status, e.client_order_id) for e in events[1:]] == [("ack", "f-2")] * 2
    assert [o[0] for o in orders_on_exchange(exchange)] == ["f-2"]


def test_cancel_and_cancel_all_empty_the_book_of_our_orders(exchange):
    intents = [place(f"c-{i}", price=61000.0 - i) for i in range(5)] + [cancel("c-0"), CANCEL_ALL]
    events, _ = execute(exchange, intents)
    assert [e.status for e in events[:5]] == ["ack"] * 5
    assert (events[5].client_order_id, events[5].status) == ("c-0", "canceled")
    # Cancel-all answers with every order it canceled (the venue's order, not ours).
    assert sorted((e.client_order_id, e.status) for e in events[6:]) == [
        (f"c-{i}", "canceled") for i in range(1, 5)
    ]
    assert exchange.call(lambda s: s.engine.open_orders("main")) == []
    # Canceling what is gone reports the truth; cancel-all on an empty book is a no-op.
    events, _ = execute(exchange, [cancel("c-0"), cancel("never"), CANCEL_ALL])
    assert [(e.client_order_id, e.status) for e in events] == [
        ("c-0", "canceled"),
        ("never", "rejected"),
    ]
    assert events[1].reason.startswith("unknown_order")


def test_dry_run_sends_nothing(exchange):
    events, sent = execute(exchange, [place("d-1"), cancel("d-1")], dry_run=True)
    assert sent == 0 and orders_on_exchange(exchange) == []
    assert [(e.status, e.reason) for e in events] == [("ack", "dry_run"), ("canceled", "dry_run")]


def test_credentials_never_reach_logs_or_reprs(tmp_path, caplog):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-value\n")
    cfg = ExchangeSinkConfig(secret_file=str(secret_file))
    creds = Credentials.load(cfg, {"MAKERFLOW_EXCHANGE_API_KEY": "key-abcdefghij"})
    assert creds.secret == "s3cr3t-value" and creds.api_key == "key-abcdefghij"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("makerflow.test").info("creds %s %r", creds, creds)
    assert "s3cr3t" not in caplog.text and "abcdefghij" not in caplog.text
    with pytest.raises(ValueError, match="MAKERFLOW_EXCHANGE_SECRET"):
        Credentials.load(ExchangeSinkConfig(), {"MAKERFLOW_EXCHANGE_API_KEY": "k"})


def test_execute_intents_operator_in_a_flow(exchange, run_flow):
    guards = GuardLimits(max_open_orders_per_market=3)
    # Our prefix: the sweeps (at the start, and the last one at the end of the input) list
    # the venue's open orders of ours and find nothing new in them.
    intents = [place(f"mf-o-{i}", price=61000.0 - i) for i in range(4)] + [cancel("mf-o-0")]
    out: list[OrderEvent] = []
    flow = Dataflow("exec_test")
    s = op.input("in", flow, TestingSource(intents))
    events = execute_intents(
        "execute", s, config(exchange, guards=guards), credentials=CREDS
    ).orders
    op.output("out", events, TestingSink(out))
    run_flow(flow)
    assert [(e.client_order_id, e.status) for e in out] == [
        ("mf-o-0", "ack"),
        ("mf-o-1", "ack"),
        ("mf-o-2", "ack"),
        ("mf-o-3", "rejected"),
        ("mf-o-0", "canceled"),
    ]
    assert out[3].reason.startswith("guard:max_open_orders")
    assert sorted(
        o.client_order_id for o in exchange.call(lambda s: s.engine.open_orders("main"))
    ) == ["mf-o-1", "mf-o-2"]


def test_a_failed_cancel_reports_the_order_still_live(exchange):
    execute(exchange, [place("fc-1")])
    exchange.inject("rate_limit", count=10, path="/api/v3/order", method="DELETE")
    [ev], _ = execute(exchange, [cancel("fc-1")], max_attempts=3)
    # Not "rejected": the order rests, and the quoter must keep treating it as live.
    assert (ev.client_order_id, ev.status) == ("fc-1", "ack")
    assert ev.reason.startswith("cancel_rejected: rate_limited")
    assert orders_on_exchange(exchange) == [("fc-1", "NEW", "61000.00", "0.01000")]


def test_an_unreachable_exchange_rejects_with_the_reason(exchange):
    async def go():
        cfg = ExchangeSinkConfig(url="http://127.0.0.1:9", timeout_ms=300, intent_ttl_ms=None)
        executor = ExchangeExecutor(cfg, credentials=CREDS, sleep=_no_sleep)
        try:
            return await executor.execute_many([place("u-1"), cancel("u-1")])
        finally:
            await executor.close()

    events = asyncio.run(go())
    assert [e.status for e in events] == ["rejected", "rejected"]
    # ccxt reports a refused connection as ExchangeNotAvailable.
    assert all(e.reason.startswith("exchange_unavailable:") for e in events)


def test_ccxt_rate_limiter_keeps_the_sink_under_the_venue_limit():
    """The venue allows 25 orders/s (burst 5). With ccxt's limiter spacing orders 50 ms apart
    (20/s) nothing is refused; without it a burst is, and the retries still never place an
    order twice."""
    with LocalExchange(speed=0, replay=REPLAY, order_rate_limit=(25, 5)) as ex:
        ex.advance(1)
        # ccxt spaces requests by rateLimit x cost; a Binance order costs 0.2.
        events, _ = execute(
            ex,
            [place(f"rl-{i}", price=61000.0 - i) for i in range(12)],
            rate_limit_ms=250,
            enable_rate_limit=True,
        )
        assert [e.status for e in events] == ["ack"] * 12
        assert ex.call(lambda s: s.rate_limited) == 0

        events, _ = execute(
            ex,
            [place(f"nl-{i}", price=60000.0 - i) for i in range(12)],
            enable_rate_limit=False,
            retry_backoff_s=0.05,
            real_sleep=True,
        )
        assert ex.call(lambda s: s.rate_limited) > 0
        assert all(e.status == "ack" or e.reason.startswith("rate_limited") for e in events)
        ids = [o[0] for o in orders_on_exchange(ex)]
        assert len(ids) == len(set(ids)) == 12 + sum(e.status == "ack" for e in events)
