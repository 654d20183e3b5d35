"""How long a partition a tansu consumer can still read, per ``fetch.wait.max.ms``.

tansu (0.6.0, memory storage, as ``makerflow.broker`` runs it) gives a fetch at most
``fetch.wait.max.ms`` to find the records, and finding them takes longer the more record
batches the partition holds (every batch, wherever the fetch starts: a consumer at the end is
as slow as one at the start). A fetch that runs out of time comes back empty, and so does
every retry: the consumer stops receiving, for good, since the partition only grows (tansu's
memory storage keeps everything; ``retention.ms`` is not applied). The flows' consumers of
:data:`makerflow.sources.kafka.LOW_LATENCY_TOPICS` wait 5 ms.

For each partition length (one-record batches, the worst case: the services' producers send
a batch per ``linger.ms``) and each wait, a consumer reads the whole partition from the
start, then one at the end gets 20 new records; printed: how many arrived within the bound.

What it found (2026-12-02, 2 shared cores, load ~4): at 8000 batches, 1 ms read nothing
(from the start or at the end), 5 ms 5661 of 8000 in 4 s and the 20 at the end, 100 ms
everything in 0.08 s; at 10 000 batches of 20 records, 5 ms read 40 of 200 000 in 10 s,
10 ms all in 6.3 s, 20 ms all in 0.6 s; at 16 000 one-record
batches (load 1-2), 5 ms read nothing from the start and none of the 20 at the end, 20 ms
all in 1.1 s and the 20. ``benchmarks/service_memory.py``'s watcher (then
1 ms) stopped counting ticks half-way through a run for this reason (the ticks topic holds
~4500 batches by the end), while the service wrote every tick. A service on tansu whose input
partition outgrows its wait (~10 000 batches at 5 ms here; md.book gets one per 5 ms of
linger while busy) would stop the same way: a live run longer than this benchmark's hour of
market data, or a demo left running, needs a broker that indexes its log (Kafka, Redpanda)
or a longer wait.

    python benchmarks/tansu_fetch_depth.py                       # 2000 4000 8000 batches
    python benchmarks/tansu_fetch_depth.py --batches 16000 --waits 5 20 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics

BOUND_S = 4.0
TAIL = 20


def received(c: Consumer, want: int) -> tuple[int, float]:
    n, t0 = 0, time.monotonic()
    while n < want and time.monotonic() - t0 < BOUND_S:
        n += sum(1 for m in c.consume(1000, 0.1) if m.error() is None)
    return n, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[2000, 4000, 8000])
    ap.add_argument("--waits", type=int, nargs="+", default=[1, 5, 20, 100])
    args = ap.parse_args()
    print(f"{'batches':>8} {'wait ms':>8} {'from start':>16} {'s':>6} {'at the end':>11}")
    with Broker() as b:
        for k, batches in enumerate(args.batches):
            topic = f"depth{k}"
            ensure_topics([b.bootstrap], [topic])
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
            for _ in range(batches):
                p.produce(topic, b"x" * 300, b"k", 0)
                p.flush()
            length = batches
            for wait in args.waits:
                conf = {
                    "bootstrap.servers": b.bootstrap,
                    "group.id": f"depth-{k}-{wait}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": wait,
                }
                c = Consumer(conf)
                c.assign([TopicPartition(topic, 0, 0)])
                n, secs = received(c, length)
                c.close()
                c = Consumer({**conf, "group.id": f"depth-{k}-{wait}-end"})
                c.assign([TopicPartition(topic, 0, length)])  # the end: one record per batch
                c.consume(1000, 0.5)  # the consumer is fetching when the records come
                for _ in range(TAIL):
                    p.produce(topic, b"y", b"k", 0)
                    p.flush()
                tail, _ = received(c, TAIL)
                c.close()
                print(
                    f"{length:8d} {wait:8d} {n:7d} of {length:6d} {secs:6.2f} {tail:5d} of {TAIL}"
                )
                length += TAIL
    return 0


if __name__ == "__main__":
    sys.exit(main())
