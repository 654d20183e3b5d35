"""Typed Kafka output: encode events as JSON, keyed by the topic's key.

The sink is a small replacement for Bytewax's ``KafkaSink`` because that one never looks at
delivery reports: a message the broker refused (too large, topic missing, broker gone) would
vanish. Here every batch ends with a flush, and a failed delivery fails the batch (and so the
epoch) instead of dropping data. Only failures produce delivery reports
(``delivery.report.only.error``), so the check costs nothing per good message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Stream, operator
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from makerflow import metrics
from makerflow.kafka_admin import KafkaUnreachable, KeyPartitions, LibrdkafkaLog
from makerflow.schemas.codec import encode
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.topics import DEAD_LETTERS, Topic

logger = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    # Keyed messages go to the partition KeyPartitions picks (the one read by the worker
    # their keyed steps run on); this places only the unkeyed ones.
    "partitioner": "murmur2_random",
    # Retries neither reorder nor duplicate: per-key order must hold end to end.
    "enable.idempotence": True,
    "delivery.report.only.error": True,
    "linger.ms": "5",
}
DEAD_LETTER_PRODUCER_DEFAULTS: dict[str, str] = {
    # A dead letter carries its raw value base64-encoded (4/3 of its size) plus metadata, so
    # it can outgrow the 1 MB default for a value the broker accepted. The broker (or topic)
    # must accept it too: ``max.message.bytes`` on Kafka, no limit to speak of on tansu.
    "message.max.bytes": str(8 * 1024 * 1024),
}
FLUSH_TIMEOUT_S = 30.0


class DeliveryFailed(RuntimeError):
    """The broker did not take messages the flow produced."""


class MessageEncoder:
    """Event -> Kafka message with the topic's key (``venue:symbol``, ``account:asset``)."""

    def __init__(self, step: str, topic: Topic[Any]) -> None:
        self.topic = topic
        self._out = metrics.EVENTS_OUT.labels(step=step)

    def __call__(self, event: Any) -> KafkaSinkMessage[bytes | None, bytes]:
        self._out.inc()
        key = self.topic.key_of(event)
        return KafkaSinkMessage(key=key.encode() if key else None, value=encode(event))


class _EventSinkPartition(StatelessSinkPartition[Any]):
    def __init__(
        self, producer: Producer, topic: Topic[Any], step: str, timeout_s: float = FLUSH_TIMEOUT_S
    ) -> None:
        self._producer = producer
        # Keys go to the partition their keyed steps' worker reads (makerflow.placement).
        self._partitions = KeyPartitions(producer, timeout_s)
        self._topic = topic
        self._out = metrics.EVENTS_OUT.labels(step=step)
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"partition {msg.partition()}: {err.str()}")

    def write_batch(self, items: list[Any]) -> None:
        p = self._producer
        name = self._topic.name
        key_of = self._topic.key_of
        partition_of = self._partition
        for event in items:
            value = encode(event)
            key = key_of(event) or None
            part = partition_of(name, key)
            while True:
                try:
                    p.produce(name, value, key, part, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    # The local queue is full: let librdkafka send, then retry.
                    p.poll(0.05)
        self._flush()
        self._out.inc(len(items))

    def _partition(self, topic: str, key: str | None) -> int:
        try:
            return self._partitions.of(topic, key)
        except KafkaUnreachable as exc:
            raise DeliveryFailed(str(exc)) from exc

    def _flush(self) -> None:
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left:
            raise DeliveryFailed(
                f"{left} messages to {self._topic.name} not delivered within {FLUSH_TIMEOUT_S}s;"
                " is the broker up?"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(
                f"the broker refused {len(failures)} messages to {self._topic.name}:"
                f" {'; '.join(failures[:3])}"
            )

    def close(self) -> None:
        self._flush()


class EventSink(DynamicSink[Any]):
    """Writes events to one registered topic; one producer per worker.

    A key is always handled by one worker (its keyed step's), it goes to one partition
    (:class:`~makerflow.kafka_admin.KeyPartitions`), and librdkafka keeps per-partition order,
    so per-key order survives from input to output.
    """

    def __init__(
        self,
        brokers: Sequence[str],
        topic: Topic[Any],
        add_config: dict[str, str] | None = None,
        *,
        step: str | None = None,
    ) -> None:
        self.brokers = list(brokers)
        self.topic = topic
        self.step = step
        self.config = {
            **PRODUCER_DEFAULTS,
            "bootstrap.servers": ",".join(self.brokers),
            **(add_config or {}),
        }

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _EventSinkPartition:
        # librdkafka's lines through logging, a repeated one (broker down) once a minute.
        config = {"logger": LibrdkafkaLog(), **self.config}
        # Learning the topic's partitions waits no longer than a message may take.
        timeout_s = min(FLUSH_TIMEOUT_S, float(config.get("message.timeout.ms", 1e9)) / 1000)
        return _EventSinkPartition(Producer(config), self.topic, self.step or step_id, timeout_s)


@operator
def kafka_output(
    step_id: str,
    up: Stream[Any],
    *,
    brokers: Sequence[str],
    topic: Topic[Any],
    add_config: dict[str, str] | None = None,
) -> None:
    """Write events to ``topic`` keyed by its key; a failed delivery fails the flow."""
    op.output("kafka", up, EventSink(brokers, topic, add_config, step=step_id))


@operator
def dead_letter_output(
    step_id: str,
    up: Stream[DeadLetter],
    *,
    brokers: Sequence[str],
    add_config: dict[str, str] | None = None,
    topic: Topic[DeadLetter] = DEAD_LETTERS,
) -> None:
    """Write dead letters to the dead-letter topic (large values allowed)."""
    config = {**DEAD_LETTER_PRODUCER_DEFAULTS, **(add_config or {})}
    kafka_output("out", up, brokers=brokers, topic=topic, add_config=config)
