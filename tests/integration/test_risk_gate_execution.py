"""The risk gate in the execution service: an intent for a halted scope written straight to
``orders.intents`` (not through the quoter) never reaches the exchange. Real broker, the
execution flow, the unmodified ccxt client and the local exchange."""

from __future__ import annotations

import pytest
from bytewax.testing import run_main

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.flows.common import FlowSettings
from makerflow.flows.execution import ExecutionConfig, ExecutionTopics, build_flow
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.operators.risk_gate import GateConfig
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
MARKET = "market:binance:BTC/USDT"


def intent(cid, action="place", symbol="BTC/USDT", **kw):
    return OrderIntent(
        ts=TS + 1, venue="binance", symbol=symbol, action=action, client_order_id=cid, **kw
    )


def test_an_intent_for_a_halted_scope_never_reaches_the_exchange(broker, unique, monkeypatch):
    monkeypatch.setenv("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    fields = {
        "intents": reg.ORDER_INTENTS,
        "order_events": reg.ORDER_EVENTS,
        "fills": reg.FILLS,
        "balances": reg.BALANCES,
        "risk_states": reg.RISK_STATE,
    }
    topics = ExecutionTopics(
        **{f: Topic(unique(f"g.{f}"), t.key, t.value_type) for f, t in fields.items()}
    )
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [getattr(topics, f).name for f in fields] + [reg.DEAD_LETTERS.name])
    states = [
        RiskState(ts=TS, scope=s, status="ACTIVE") for s in scopes_of_market("binance", "BTC/USDT")
    ]
    states.append(
        RiskState(ts=TS, scope=MARKET, status="HALTED", reasons=("largest move 1000 bps",))
    )
    produce_events(brokers, topics.risk_states, states)
    produce_events(
        brokers,
        topics.intents,
        [
            # A second producer (or a replayed topic) still wants to trade the halted market.
            intent("g-halted", side="buy", price=61000.0, qty=0.01, reference=61837.0),
            intent("g-halted-2", side="sell", price=62500.0, qty=0.01, reference=61837.0),
            # Reduce-only passes where configured; here it is not.
            intent("g-reduce", side="sell", price=62500.0, qty=0.01, reduce_only=True),
            # A market risk never spoke of: refused once the wait for risk's word is over.
            intent("g-unheard", symbol="ETH/USDT", side="buy", price=2000.0, qty=0.01),
            # Taking risk off always passes.
            intent("g-halted", action="cancel"),
            OrderIntent(ts=TS + 2, venue="binance", symbol="BTC/USDT", action="cancel_all"),
        ],
    )
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        config = ExecutionConfig(
            sink=ExchangeSinkConfig(url=ex.url, rate_limit_ms=1),
            private=PrivateStreamConfig(url=ex.url, mode="websocket"),
            gate=GateConfig(reduce_only_passes=False, hold_ms=500),
        )
        run_main(
            build_flow(
                FlowSettings(brokers=brokers, tail=False),
                config,
                topics,
                credentials=Credentials(DEFAULT_API_KEY, DEFAULT_SECRET),
                stop=RunLatch(max_runtime_s=4),
                flow_id="execution_gate",
            )
        )
        on_venue = ex.call(
            lambda s: [o.client_order_id for o in s.engine.all_orders("main", "BTCUSDT")]
        )

    assert on_venue == []  # nothing of ours ever reached the exchange
    events = [
        reg.ORDER_EVENTS.codec.decode(m.value())
        for m in read_topic(brokers, topics.order_events.name, idle=1.0, timeout=30)
    ]
    # The gate's refusals (the cancel of g-halted, which passes, is refused by the venue as
    # unknown: the two streams interleave in no fixed order).
    refused = {
        e.client_order_id: e.reason
        for e in events
        if e.status == "rejected" and e.reason.startswith("risk_gate")
    }
    assert set(refused) >= {"g-halted", "g-halted-2", "g-reduce", "g-unheard"}
    assert refused["g-halted"].startswith("risk_gate:halted: market:binance:BTC/USDT is HALTED")
    assert "largest move 1000 bps" in refused["g-halted-2"]
    assert refused["g-unheard"].startswith("risk_gate:unknown: no risk state heard for global")
