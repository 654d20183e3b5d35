"""A restarted execution service without a recovery store (``MAKERFLOW_FROM``), against the
local exchange through the unmodified ccxt client: old places are never executed again, and
cancels made while it was down are honoured.

The local exchange refuses a client id only while its order is open (as Binance does), so a
closed order's id sent again would place a second order: only makerflow's own logic stops it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from bytewax.testing import run_main

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.flows.common import FlowSettings
from makerflow.flows.execution import ExecutionConfig, build_flow
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.operators.risk_gate import GateConfig
from makerflow.schemas import topics as reg
from makerflow.schemas.events import OrderEvent
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig
from tests.conftest import FIXTURES
from tests.integration.execution_topics_flow import intent, rest, topics_for

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)


class Service:
    """The execution flow on one test's topics, run to the end of its input."""

    def __init__(self, broker: Any, unique: Any, ex: LocalExchange) -> None:
        self.topics = topics_for(unique("xs").replace(".", "_"))
        self.brokers = (broker.bootstrap,)
        self.ex = ex
        names = [getattr(self.topics, f).name for f in self.topics.__dataclass_fields__]
        ensure_topics(self.brokers, [*names, reg.DEAD_LETTERS.name])

    def run(self, *, from_beginning: bool, ttl_ms: int | None) -> list[OrderEvent]:
        """One run (a fresh process's state: no recovery); the order events it wrote."""
        before = len(self.events())
        config = ExecutionConfig(
            sink=ExchangeSinkConfig(url=self.ex.url, rate_limit_ms=1, intent_ttl_ms=ttl_ms),
            private_stream=False,
            gate=GateConfig(enabled=False),
        )
        settings = FlowSettings(brokers=self.brokers, tail=False, from_beginning=from_beginning)
        run_main(build_flow(settings, config, self.topics, credentials=CREDS))
        return self.events()[before:]

    def events(self) -> list[OrderEvent]:
        msgs = read_topic(self.brokers, self.topics.order_events.name, idle=0.5, timeout=30)
        return [reg.ORDER_EVENTS.codec.decode(m.value()) for m in msgs]

    def orders(self) -> list[tuple[str, str]]:
        return self.ex.call(
            lambda s: [
                (o.client_order_id, o.status) for o in s.engine.all_orders("main", "BTCUSDT")
            ]
        )

    def btc(self) -> float:
        return float(self.ex.call(lambda s: s.engine.balances("main")["BTC"].free))


def test_restarts_never_execute_old_places_and_honour_the_cancels_made_while_down(
    broker: Any, unique: Any
) -> None:
    batch = [f"mf-p{i}" for i in range(5)]
    single = [f"mf-q{i}" for i in range(3)]
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        svc = Service(broker, unique, ex)
        btc = svc.btc()
        buy = intent("mf-m", side="buy", qty=0.002, order_type="market", reference=61837.0)
        places = [rest("mf-r1"), rest("mf-r2"), buy] + [rest(c) for c in batch + single]
        produce_events(svc.brokers, svc.topics.intents, places)
        produce_events(svc.brokers, svc.topics.intents, [intent("mf-r1", "cancel")])
        svc.run(from_beginning=True, ttl_ms=None)
        first = svc.orders()

        # From the beginning: every intent is read again, all older than their time-to-live.
        again = svc.run(from_beginning=True, ttl_ms=1)
        assert svc.orders() == first, "the restart sent something"
        moved = svc.btc() - btc

        # While execution is down: five cancels in one batch (tansu's high watermark then
        # reads four short, so a start "at the end" reads four of them), three one by one
        # (the end is exact: a start at the end reads none of them).
        produce_events(svc.brokers, svc.topics.intents, [intent(c, "cancel") for c in batch])
        for c in single:
            produce_events(svc.brokers, svc.topics.intents, [intent(c, "cancel")])
        svc.run(from_beginning=False, ttl_ms=5_000)
        on_venue = svc.orders()

    # Nothing was placed twice, the market buy executed once.
    assert Counter(c for c, _ in first) == Counter(["mf-r1", "mf-r2", "mf-m", *batch, *single]), (
        first
    )
    assert dict(first) == {"mf-r1": "CANCELED", "mf-m": "FILLED"} | {
        c: "NEW" for c in ["mf-r2", *batch, *single]
    }
    assert moved == pytest.approx(0.002 * 0.999), "the market buy executed twice"
    # What the restart from the beginning says of orders the venue holds is the venue's word:
    # an open one is not "rejected" (nor canceled as an orphan), the filled one not "expired".
    said = {(e.client_order_id, e.status) for e in again}
    assert not {("mf-r2", "rejected"), ("mf-m", "rejected"), ("mf-r2", "canceled")} & said, said
    # From the end: every cancel made while down was honoured (and the one order nobody
    # asked to cancel, unknown to an order state that starts empty, went as an orphan).
    assert len(on_venue) == len(first)
    assert dict(on_venue) == {"mf-m": "FILLED"} | {
        c: "CANCELED" for c in ["mf-r1", "mf-r2", *batch, *single]
    }, on_venue
