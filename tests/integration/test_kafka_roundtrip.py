"""100 000 events through a flow on a 4-partition topic, with one and with two workers: the
same multiset comes out and every key keeps its order. Plus: the sink refuses to drop data."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas.codec import encode
from makerflow.schemas.events import DeadLetter, Trade
from makerflow.schemas.topics import Topic
from makerflow.sinks.kafka import DeliveryFailed, kafka_output
from makerflow.sources.kafka import kafka_input

pytestmark = pytest.mark.slow

N = 100_000
PARTITIONS = 4
MARKETS = [(venue, f"{base}/USDT") for venue in ("binance", "okx", "bybit") for base in "ABCDEFGH"]
_flows = itertools.count()


def events() -> Iterator[Trade]:
    """Trades spread over 24 markets; ``trade_id`` is the market's own sequence number."""
    seq: dict[int, int] = defaultdict(int)
    for i in range(N):
        m = (i * 7919) % len(MARKETS)  # a fixed, well-mixed order of markets
        venue, symbol = MARKETS[m]
        yield Trade(
            ts=1_723_161_253_000_000_000 + i * 1_000,
            venue=venue,
            symbol=symbol,
            trade_id=str(seq[m]),
            price=100.0 + (i % 1000) / 8,
            qty=0.5 + i % 3,
            side="buy" if i % 3 else "sell",
        )
        seq[m] += 1


@dataclass(frozen=True)
class Input:
    topic: Topic[Trade]
    expected: Counter[bytes]


@pytest.fixture(scope="module")
def produced(broker: Broker) -> Input:
    topic = Topic(f"roundtrip.in.{next(_flows)}", "market", Trade)
    ensure_topics([broker.bootstrap], [topic.name], partitions=PARTITIONS)
    evs = list(events())
    # Batched production: fast, and tail=False still reads whole batches on tansu.
    assert produce_events([broker.bootstrap], topic, evs) == N
    return Input(topic, Counter(encode(e) for e in evs))


RUNNERS: dict[str, Callable[[Dataflow], None]] = {
    "1_worker": lambda flow: run_main(flow),
    "2_workers": lambda flow: cluster_main(flow, [], 0, worker_count_per_proc=2),
}


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_round_trip_keeps_every_event_and_per_key_order(
    broker: Broker, produced: Input, runner: str
) -> None:
    brokers = [broker.bootstrap]
    out = Topic(f"roundtrip.out.{next(_flows)}", "market", Trade)
    ensure_topics(brokers, [out.name], partitions=PARTITIONS)

    flow = Dataflow(f"roundtrip_{runner}")
    streams = kafka_input("in", flow, brokers=brokers, topic=produced.topic, tail=False)
    dead: list[DeadLetter] = []
    op.output("dead", streams.errs, TestingSink(dead))
    kafka_output("out", streams.oks, brokers=brokers, topic=out)
    RUNNERS[runner](flow)

    assert dead == []
    msgs = read_topic(brokers, out.name, expected=N, timeout=60)
    assert Counter(m.value() for m in msgs) == produced.expected

    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    sequences: dict[str, list[int]] = defaultdict(list)
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        ev = out.codec.decode(m.value())
        assert m.key() == ev.key.encode()
        partitions_of_key[ev.key].add(m.partition())
        sequences[ev.key].append(int(ev.trade_id))
    assert len(sequences) == len(MARKETS)
    for key, seq in sequences.items():
        assert seq == list(range(len(seq))), f"{key} out of order"
    # One key, one partition: the partitioner is the same murmur2 on the way in and out.
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1


def test_sink_fails_the_flow_rather_than_drop_events(unique: Callable[[str], str]) -> None:
    # A broker that stops before the flow writes: every message times out. The flow must
    # raise; a sink that ignored delivery reports would end "successfully" with nothing sent.
    with Broker() as gone:
        address = gone.bootstrap
    trades = list(itertools.islice(events(), 10))
    flow = Dataflow("sink_failure")
    src = op.input("in", flow, TestingSource(trades))
    kafka_output(
        "out",
        src,
        brokers=[address],
        topic=Topic(unique("nowhere"), "market", Trade),
        add_config={"message.timeout.ms": "1500", "socket.connection.setup.timeout.ms": "1000"},
    )
    with pytest.raises(Exception) as info:
        run_main(flow)
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    assert any(isinstance(e, DeliveryFailed) for e in chain), chain
