"""The bounded Kafka source's end markers, on the real broker: one ``InputEnded`` per
partition (with the topic's partition count) after that partition's last event, never a
dead letter, never counted as an event; none when tailing or when not asked for."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from prometheus_client import REGISTRY

from makerflow.kafka_admin import ensure_topics, produce_events, produce_raw
from makerflow.schemas.events import Trade
from makerflow.schemas.markers import InputEnded
from makerflow.schemas.topics import MD_TRADES, Topic
from makerflow.sources.kafka import kafka_input

pytestmark = pytest.mark.slow


def trades(n: int) -> list[Trade]:
    return [
        Trade(
            ts=1_723_161_253_000_000_000 + i,
            venue="binance",
            symbol=f"S{i % 5}/USDT",  # five keys over the partitions
            trade_id=str(i),
            price=1.0,
            qty=1.0,
            side="buy",
        )
        for i in range(n)
    ]


def flow_id(topic: Topic[Trade], markers: bool) -> str:
    return f"end_markers_{topic.name.replace('.', '_')}_{markers}"


def read_bounded(brokers: tuple[str, ...], topic: Topic[Trade], markers: bool) -> tuple[list, list]:
    flow = Dataflow(flow_id(topic, markers))
    s = kafka_input(
        "in", flow, brokers=brokers, topic=topic, tail=False, end_markers=markers, batch_size=7
    )
    oks: list = []
    errs: list = []
    op.output("oks", s.oks, TestingSink(oks))
    op.output("errs", s.errs, TestingSink(errs))
    run_main(flow)
    return oks, errs


def test_each_partition_ends_with_one_marker_after_its_events(broker, unique) -> None:
    name = unique("md.trades")
    topic = Topic(name, MD_TRADES.key, Trade)
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [name], partitions=3)
    sent = trades(60)
    produce_events(brokers, topic, sent)
    produce_raw(brokers, name, [(b"S1/USDT", b"not json")])
    step = {"step": f"{flow_id(topic, True)}.in"}
    before = REGISTRY.get_sample_value("makerflow_events_in_total", step) or 0.0

    oks, errs = read_bounded(brokers, topic, markers=True)

    markers = [x for x in oks if type(x) is InputEnded]
    assert sorted(markers, key=lambda m: m.partition) == [InputEnded(name, p, 3) for p in range(3)]
    events = [x for x in oks if type(x) is not InputEnded]
    assert sorted(e.trade_id for e in events) == sorted(e.trade_id for e in sent)
    assert len(errs) == 1 and errs[0].reason  # the bad message, and no marker, is a letter
    # The markers close the stream: no event after the last one.
    last_marker = max(oks.index(m) for m in markers)
    assert all(oks.index(e) < last_marker for e in events)
    counted = REGISTRY.get_sample_value("makerflow_events_in_total", step) or 0.0
    assert counted - before == 61  # 60 events and one letter; the markers are not events

    plain, _ = read_bounded(brokers, topic, markers=False)
    assert not [x for x in plain if type(x) is InputEnded]
