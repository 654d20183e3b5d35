"""The execution service end to end: intents on Kafka -> the local exchange through the real
ccxt client -> order events, fills and balances on Kafka (sink acks + private stream)."""

from __future__ import annotations

import pytest
from bytewax.testing import run_main

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.flows.common import FlowSettings
from makerflow.flows.execution import ExecutionConfig, ExecutionTopics, build_flow
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as reg
from makerflow.schemas.events import OrderIntent, RiskState
from makerflow.schemas.scopes import scopes_of_market
from makerflow.schemas.topics import Topic
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig
from makerflow.sources.bounded import RunLatch
from makerflow.sources.private_stream import PrivateStreamConfig
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
TS = 1_723_161_254_100_000_000


def intent(cid, action="place", **kw):
    return OrderIntent(
        ts=TS, venue="binance", symbol="BTC/USDT", action=action, client_order_id=cid, **kw
    )


def test_execution_service_on_kafka(broker, unique, monkeypatch):
    monkeypatch.setenv("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    fields = {
        "intents": reg.ORDER_INTENTS,
        "order_events": reg.ORDER_EVENTS,
        "fills": reg.FILLS,
        "balances": reg.BALANCES,
        "alerts": reg.ALERTS,
        "risk_states": reg.RISK_STATE,
    }
    topics = ExecutionTopics(
        **{f: Topic(unique(f"x.{f}"), t.key, t.value_type) for f, t in fields.items()}
    )
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [getattr(topics, f).name for f in fields] + [reg.DEAD_LETTERS.name])
    # Risk says every scope of the market trades (the gate places nothing in unheard scopes).
    produce_events(
        brokers,
        topics.risk_states,
        [
            RiskState(ts=TS, scope=s, status="ACTIVE")
            for s in scopes_of_market("binance", "BTC/USDT")
        ],
    )
    produce_events(
        brokers,
        topics.intents,
        [
            intent("k-rest", side="buy", price=61000.0, qty=0.01, reference=61837.0),
            # Not post-only and through the ask: fills at once as taker.
            intent(
                "k-take", side="buy", price=61840.0, qty=0.01, reference=61837.0, post_only=False
            ),
            intent("k-rest", action="cancel"),
            intent("k-fat", side="buy", price=61000.0, qty=50.0, reference=61837.0),
        ],
    )
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        config = ExecutionConfig(
            # Recorded event times: no time-to-live.
            sink=ExchangeSinkConfig(url=ex.url, rate_limit_ms=1, intent_ttl_ms=None),
            private=PrivateStreamConfig(url=ex.url, mode="websocket"),
        )
        # The private stream is live: the latch ends the run once intents are long done.
        latch = RunLatch(max_runtime_s=5)
        run_main(
            build_flow(
                FlowSettings(brokers=brokers, tail=False),
                config,
                topics,
                credentials=Credentials(DEFAULT_API_KEY, DEFAULT_SECRET),
                stop=latch,
                flow_id="execution_kafka",
            )
        )
        on_venue = ex.call(
            lambda s: sorted(
                (o.client_order_id, o.status) for o in s.engine.all_orders("main", "BTCUSDT")
            )
        )

    assert on_venue == [("k-rest", "CANCELED"), ("k-take", "FILLED")]
    events = [
        reg.ORDER_EVENTS.codec.decode(m.value())
        for m in read_topic(brokers, topics.order_events.name, idle=1.0, timeout=30)
    ]
    seen = {(e.client_order_id, e.status) for e in events}
    assert {
        ("k-rest", "ack"),
        ("k-take", "filled"),
        ("k-rest", "canceled"),
        ("k-fat", "rejected"),
    } <= seen
    [fat] = [e for e in events if e.client_order_id == "k-fat"]
    assert fat.reason.startswith("guard:max_order_notional")
    fills = [
        reg.FILLS.codec.decode(m.value())
        for m in read_topic(brokers, topics.fills.name, idle=1.0, timeout=30)
    ]
    assert [(f.client_order_id, f.qty, f.price, f.liquidity) for f in fills] == [
        ("k-take", 0.01, 61837.64, "taker")
    ]
    balances = [
        reg.BALANCES.codec.decode(m.value())
        for m in read_topic(brokers, topics.balances.name, idle=1.0, timeout=30)
    ]
    btc = [b for b in balances if b.asset == "BTC"]
    assert btc[-1].total == pytest.approx(2 + 0.01 * 0.999)
