"""The Kafka input publishes librdkafka's consumer lag as makerflow_kafka_consumer_lag, the
metric the ConsumerLagHigh alert reads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING
from prometheus_client import REGISTRY

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_raw
from makerflow.sources.kafka import LagReportingKafkaSource, consumer_lag

pytestmark = pytest.mark.slow


def test_consumer_lag_is_read_from_librdkafka_statistics() -> None:
    parts = {
        "0": {"ls_offset": 60, "app_offset": 18, "consumer_lag": -1},
        "1": {"ls_offset": 60, "app_offset": -1001, "consumer_lag": -1},
        "2": {"ls_offset": 1, "app_offset": 25, "consumer_lag": -1},
    }
    stats = json.dumps({"topics": {"ticks": {"partitions": parts}}})
    assert consumer_lag(stats, "ticks", 0) == 42
    assert consumer_lag(stats, "ticks", 1) is None  # nothing consumed yet: unknown
    assert consumer_lag(stats, "ticks", 2) == 0  # tansu's short watermark never goes negative
    assert consumer_lag(stats, "other", 0) is None


def test_a_lagging_partition_reports_its_lag(broker: Broker, unique: Callable[[str], str]) -> None:
    name = unique("lag.consumer")
    ensure_topics([broker.bootstrap], [name])
    # One record per batch keeps tansu's high watermark exact (see makerflow.broker).
    produce_raw([broker.bootstrap], name, [(b"k", b"%d" % i) for i in range(60)])
    source = LagReportingKafkaSource(
        [broker.bootstrap], [name], tail=True, starting_offset=OFFSET_BEGINNING, batch_size=1
    )
    part = source.build_part("lag_step", f"0-{name}", None)
    labels = {"topic": name, "partition": "0"}
    read = 0
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            # A slow consumer: one message every 0.1 s; statistics come every second.
            read += len(list(part.next_batch()))
            lag = REGISTRY.get_sample_value("makerflow_kafka_consumer_lag", labels)
            if lag is not None:
                break
            time.sleep(0.1)
    finally:
        part.close()
    assert lag is not None, "no consumer-lag statistics within 15 s"
    assert 0 < lag <= 60 - read + 1, (lag, read)
