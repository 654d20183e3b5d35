"""The Kafka input reports event-time lag: broker time of the message minus the event's time."""

from __future__ import annotations

import time
from collections.abc import Callable

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from prometheus_client import REGISTRY

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events
from makerflow.schemas.events import Trade
from makerflow.schemas.topics import Topic
from makerflow.sources.kafka import kafka_input

pytestmark = pytest.mark.slow


def test_event_time_lag_is_broker_time_minus_event_time(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    topic = Topic(unique("lag.trades"), "market", Trade)
    ensure_topics([broker.bootstrap], [topic.name])
    behind_s = 30.0
    ts = time.time_ns() - int(behind_s * 1e9)
    trades = [
        Trade(
            ts=ts,
            venue="binance",
            symbol="BTC/USDT",
            trade_id=str(i),
            price=1.0,
            qty=1.0,
            side="buy",
        )
        for i in range(10)
    ]
    produce_events([broker.bootstrap], topic, trades)
    flow = Dataflow("lag_flow")
    s = kafka_input("in", flow, brokers=[broker.bootstrap], topic=topic, tail=False)
    out: list[Trade] = []
    op.output("out", s.oks, TestingSink(out))
    run_main(flow)
    assert len(out) == 10
    lag = REGISTRY.get_sample_value("makerflow_event_time_lag_seconds", {"step": "lag_flow.in"})
    assert lag is not None
    # The events were stamped 30 s before they were produced; the broker stamped them then.
    assert behind_s - 1 < lag < behind_s + 30
