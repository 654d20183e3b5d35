"""A consumer on tansu needs a fetch wait long enough for the broker to find the records.

tansu gives a fetch at most ``fetch.wait.max.ms`` to find records, and its memory storage
takes longer the more record batches the partition holds; a fetch that runs out of time comes
back empty, and so does every retry: the consumer stops receiving for good. This is what made
``benchmarks/service_memory.py`` report a ticks service that "stopped writing ticks": its
watcher (``fetch.wait.max.ms`` 1) stopped counting half-way while every tick was on the topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from benchmarks.service_support import TopicWatch
from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_raw

# One record per batch: the number of batches is what tansu's fetch time grows with. At 1 ms a
# watcher received none of 8000 such batches on an idle machine.
BATCHES = 8000
DEADLINE_S = 30.0


@pytest.mark.slow
def test_the_benchmark_watcher_reads_every_record_of_a_long_partition(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    topic = unique("long")
    ensure_topics([broker.bootstrap], [topic])
    produce_raw([broker.bootstrap], topic, ((b"k", b"x" * 300) for _ in range(BATCHES)))
    watch = TopicWatch(broker.bootstrap, topic)
    watch.start()
    try:
        end = time.monotonic() + DEADLINE_S
        while watch.count < BATCHES and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        watch.close()
    assert watch.count == BATCHES
