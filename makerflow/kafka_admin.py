"""Small Kafka utilities for commands, the demo and tests: create topics, produce events,
read a topic back whole.

Reading "to the end" cannot trust the high watermark on the tansu broker (see
``makerflow.broker``), so :func:`read_topic` reads until it has ``expected`` messages or the
topic has been idle for ``idle`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from makerflow.schemas.codec import encode
from makerflow.schemas.topics import Topic


def ensure_topics(
    brokers: Sequence[str],
    names: Iterable[str],
    partitions: int = 1,
    timeout: float = 10.0,
    topic_config: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with ``partitions`` partitions.

    ``topic_config`` gives per-topic settings (``{"deadletter": {"max.message.bytes": ...}}``).
    Returns the names it created.
    """
    admin = AdminClient({"bootstrap.servers": ",".join(brokers)})
    existing = set(admin.list_topics(timeout=timeout).topics)
    configs = topic_config or {}
    new = [
        NewTopic(n, partitions, 1, config=dict(configs.get(n, {})))
        for n in dict.fromkeys(names)
        if n not in existing
    ]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
    return created


def list_topics(brokers: Sequence[str], timeout: float = 10.0) -> dict[str, int]:
    """Every topic on the cluster with its partition count (internal topics left out)."""
    admin = AdminClient({"bootstrap.servers": ",".join(brokers)})
    meta = admin.list_topics(timeout=timeout)
    return {
        name: len(t.partitions)
        for name, t in sorted(meta.topics.items())
        if not name.startswith("__")
    }


def producer(brokers: Sequence[str], **config: Any) -> Producer:
    """A producer that partitions keys like the flows' sinks do (murmur2, as Java clients)."""
    return Producer(
        {
            "bootstrap.servers": ",".join(brokers),
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,  # retries keep order and add no duplicates
            "delivery.report.only.error": True,
            # Room for large values: tests send 1 MB ones; the broker still has its own limit.
            "message.max.bytes": 8 * 1024 * 1024,
            **config,
        }
    )


def produce_events(
    brokers: Sequence[str], topic: Topic[Any], events: Iterable[Any], **config: Any
) -> int:
    """Produce ``events`` to ``topic`` keyed by the topic's key; returns how many.

    Raises when the broker refuses any of them.
    """
    out = _Sender(producer(brokers, **config))
    n = 0
    for ev in events:
        out.send(topic.name, topic.key_of(ev) or None, encode(ev))
        n += 1
        if not n % 10_000:
            out.producer.poll(0)  # serve delivery reports so the local queue drains
    out.flush()
    return n


def produce_raw(
    brokers: Sequence[str],
    topic: str,
    values: Iterable[tuple[bytes | None, bytes | None]],
    **config: Any,
) -> int:
    """Produce raw (key, value) pairs, one record per batch so that tansu's high watermark
    stays exact."""
    out = _Sender(producer(brokers, **{"linger.ms": 0, "batch.num.messages": 1, **config}))
    n = 0
    for key, value in values:
        out.send(topic, key, value)
        out.producer.flush(10)
        n += 1
    out.flush()
    return n


class _Sender:
    """A producer plus the delivery failures it has seen (only failures are reported)."""

    def __init__(self, p: Producer) -> None:
        self.producer = p
        self.failures: list[str] = []

    def _on_delivery(self, err: Any, msg: Message) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let librdkafka send first

    def flush(self, timeout: float = 30.0) -> None:
        left = self.producer.flush(timeout)
        if left:
            raise RuntimeError(f"{left} messages were not delivered within {timeout}s")
        if self.failures:
            failed = "; ".join(self.failures[:3])
            raise RuntimeError(f"the broker refused {len(self.failures)} messages: {failed}")


def read_topic(
    brokers: Sequence[str],
    name: str,
    *,
    expected: int | None = None,
    idle: float = 2.0,
    timeout: float = 60.0,
) -> list[Message]:
    """Every message of topic ``name`` from the beginning, in partition order."""
    c = Consumer(
        {
            "bootstrap.servers": ",".join(brokers),
            "group.id": f"makerflow-read-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = c.list_topics(name, timeout=10)
        parts = meta.topics[name].partitions
        c.assign([TopicPartition(name, p, 0) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            batch = c.consume(10_000, 0.2)
            got = [m for m in batch if m.error() is None]
            if got:
                out.extend(got)
                last = time.monotonic()
            elif expected is None and time.monotonic() - last > idle:
                break
        return out
    finally:
        c.close()
