"""Bounded in-flight requests (``ExchangeSinkConfig.max_in_flight`` and
``max_in_flight_per_market``) against the local exchange with the unmodified ccxt client:
with every place held by the venue (``late`` faults), never more than the bounds are being
served at once (counted at the exchange, per symbol and in all), the bounds are reached
(the intents do run concurrently), and every intent still completes, in order per market.
"""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from makerflow.exchange import BTCUSDT, ETHUSDT, LocalExchange
from makerflow.schemas.events import OrderEvent
from makerflow.sinks.exchange import execute_intents
from tests.integration.test_execution_step import (
    CREDS,
    ORDER,
    REPLAY,
    Scheduled,
    config,
    our_orders,
    place,
)

pytestmark = pytest.mark.slow

PER_MARKET = 2
TOTAL = 3
N = 6  # places per market


@pytest.mark.timeout(120)
def test_no_more_than_the_bounds_are_in_flight_and_every_intent_completes_in_order() -> None:
    btc = [place(f"mf-btc-{i}", price=61000.0 - i) for i in range(N)]
    eth = [place(f"mf-eth-{i}", symbol="ETH/USDT", price=2500.0 - i, qty=0.01) for i in range(N)]
    seen: list[OrderEvent] = []
    with LocalExchange(speed=0, replay=REPLAY, markets=(BTCUSDT, ETHUSDT)) as ex:
        ex.advance(1)
        # The venue holds every place 0.3 s before processing it (then answers in time).
        ex.inject("late", count=2 * N, path=ORDER, method="POST", delay_s=0.3)
        flow = Dataflow("in_flight")
        intents = op.input("intents", flow, Scheduled([(0.0, i) for i in btc + eth], end_s=0.5))
        cfg = config(
            ex,
            sweep_interval_s=None,  # only the places reach the venue
            max_in_flight=TOTAL,
            max_in_flight_per_market=PER_MARKET,
        )
        out = execute_intents("execute", intents, cfg, credentials=CREDS)
        op.inspect("events", out.orders, lambda _s, e: seen.append(e))
        run_main(flow)
        peak = ex.call(lambda s: {k: n for k, n in s.max_in_flight.items() if k})
        peak_total = ex.call(lambda s: s.max_in_flight_total)
        on_venue = our_orders(ex) + our_orders(ex, "ETHUSDT")

    # Held places pile up to the bounds and never past them.
    assert peak == {"BTCUSDT": PER_MARKET, "ETHUSDT": PER_MARKET}
    assert peak_total == TOTAL
    # Every intent completed, each market's results in the order of its intents.
    for market in (btc, eth):
        cids = [i.client_order_id for i in market]
        events = [(e.client_order_id, e.status) for e in seen if e.client_order_id in cids]
        assert events == [(c, "ack") for c in cids]
    assert sorted(on_venue) == sorted((i.client_order_id, "NEW") for i in btc + eth)
