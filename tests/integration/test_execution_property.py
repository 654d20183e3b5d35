"""Property, against the real peer: whatever intents reach execution — duplicated,
reordered, a cancel before its place, a place again after its cancel — and whichever answers
the venue loses, no client id is ever placed twice on the venue, and what execution last said
of each order is what the venue holds. The execute_intents operator in a flow, the unmodified
ccxt client, the local exchange (Binance's rule: a closed order's client id is free again)."""

from __future__ import annotations

import itertools
import time

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig, execute_intents
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
RUNS = itertools.count()
VENUE_WORD = {"NEW": "ack", "PARTIALLY_FILLED": "partial", "CANCELED": "canceled"}


@pytest.fixture(scope="module")
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        yield ex


def intent(run: int, action: str, n: int) -> OrderIntent:
    cid = f"mf-p{run}-{n}"
    if action == "cancel":
        return OrderIntent(
            ts=time.time_ns(),
            venue="binance",
            symbol="BTC/USDT",
            action="cancel",
            client_order_id=cid,
        )
    return OrderIntent(
        ts=time.time_ns(),
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side="buy",
        price=60000.0 - n,
        qty=0.001,
        reference=60000.0,
    )


steps = st.lists(st.tuples(st.sampled_from(["place", "cancel"]), st.integers(0, 1)), max_size=8)
faults = st.lists(st.sampled_from(["lost", "server_error", None]), min_size=0, max_size=3)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps, faults=faults)
@example(steps=[("place", 0), ("cancel", 0), ("place", 0)], faults=[])
@example(steps=[("place", 0), ("place", 0), ("cancel", 0), ("place", 0)], faults=["lost"])
@example(steps=[("cancel", 1), ("place", 1), ("place", 2), ("cancel", 1)], faults=["server_error"])
def test_no_client_id_is_ever_placed_twice_and_the_last_word_is_the_venues(exchange, steps, faults):
    run = next(RUNS)
    exchange.call(lambda s: s.faults.clear())
    for kind in faults:
        if kind is not None:
            # The order is placed, then its answer is lost (dropped, or a 500).
            exchange.inject(kind, path="/api/v3/order", method="POST", after=True, delay_s=0.0)
    intents = [intent(run, a, n) for a, n in steps]
    events: list[OrderEvent] = []
    flow = Dataflow(f"prop_{run}")
    s = op.input("in", flow, TestingSource(intents))
    cfg = ExchangeSinkConfig(
        url=exchange.url, rate_limit_ms=1, timeout_ms=1_000, sweep_interval_s=None
    )
    out = execute_intents("execute", s, cfg, credentials=CREDS)
    op.inspect("events", out.orders, lambda _s, e: events.append(e))
    run_main(flow)

    on_venue = exchange.call(
        lambda srv: [
            (o.client_order_id, o.status)
            for o in srv.engine.all_orders("main", "BTCUSDT")
            if o.client_order_id.startswith(f"mf-p{run}-")
        ]
    )
    cids = [cid for cid, _ in on_venue]
    assert len(cids) == len(set(cids)), f"placed twice: {on_venue}"
    last = {}
    for e in events:
        last[e.client_order_id] = e.status
    for cid, status in on_venue:
        assert last.get(cid) == VENUE_WORD[status], (cid, status, events)
    # Nothing we were told is live is missing from the venue.
    live = {cid for cid, st_ in last.items() if st_ in ("ack", "partial", "unknown")}
    assert live <= {cid for cid, status in on_venue if status in ("NEW", "PARTIALLY_FILLED")}
