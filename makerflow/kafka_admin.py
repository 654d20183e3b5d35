"""Small Kafka utilities for commands, the demo and tests: create topics, produce events,
read a topic back whole; and how a service reaches Kafka (:func:`list_partitions` waits for
an unreachable broker with one clear message instead of librdkafka's connect failure every
50 ms; :class:`LibrdkafkaLog` passes librdkafka's own lines to logging, repeats held back).

Reading "to the end" cannot trust the high watermark on the tansu broker (see
``makerflow.broker``), so :func:`read_topic` reads until it has ``expected`` messages or the
topic has been idle for ``idle`` seconds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from makerflow.placement import aligned_partition
from makerflow.schemas.codec import encode
from makerflow.schemas.topics import Topic

logger = logging.getLogger(__name__)

START_HINT = "start one with `makerflow broker`, or set MAKERFLOW_BROKERS"


class LibrdkafkaLog:
    """A ``logger`` for librdkafka clients: its lines go to the ``makerflow.librdkafka``
    logger, and a line that repeats (a connect failure every reconnect backoff) is passed on
    at most once per ``every_s`` seconds, with the number held back.

    confluent-kafka calls ``log(level, fmt, facility, client, text)`` from the client's poll
    (consumers and producers poll all the time; an idle admin client never delivers).
    """

    def __init__(
        self,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        target: logging.Logger | None = None,
    ) -> None:
        self.every_s = every_s
        self.clock = clock
        self.target = target or logging.getLogger("makerflow.librdkafka")
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility = str(args[0]) if args else ""
        text = str(args[-1]) if args else fmt
        # Numbers (timings, counts) change between repeats of the same failure.
        key = (facility, re.sub(r"\d+", "#", text))
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return
        held = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        suffix = f" ({held} repeats held back)" if held else ""
        self.target.log(level, "%s: %s%s", facility, text, suffix)


class KafkaUnreachable(RuntimeError):
    """No broker answered within the time a caller was willing to wait."""


def unreachable_message(brokers: Sequence[str]) -> str:
    return f"cannot reach Kafka at {','.join(brokers)} ({START_HINT})"


def list_partitions(
    brokers: Sequence[str],
    topics: Sequence[str],
    *,
    add_config: Mapping[str, Any] | None = None,
    timeout_s: float = 5.0,
    retry_s: float = 2.0,
    give_up_s: float | None = None,
    remind_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Bytewax's input partitions (``"<partition>-<topic>"``) of ``topics``, waiting for
    the cluster as long as it takes (or ``give_up_s``, then :class:`KafkaUnreachable`).

    While no broker answers it says so once ("cannot reach Kafka at ..."), then a reminder
    every ``remind_s``, and that it got through once it does; librdkafka's own connect
    failures are silenced for this client. A topic that does not exist is an error naming it.
    """
    where = ",".join(brokers)
    config: dict[str, Any] = {**(add_config or {}), "bootstrap.servers": where, "log_level": 0}
    config.pop("logger", None)
    client = AdminClient(config)
    started = clock()
    reported_at: float | None = None
    while True:
        try:
            parts = [
                p for name in topics for p in _topic_partitions(client, name, timeout_s, where)
            ]
        except KafkaException as exc:
            now = clock()
            if reported_at is None:
                logger.error("%s; retrying every %.0f s", unreachable_message(brokers), retry_s)
                reported_at = now
            elif now - reported_at >= remind_s:
                logger.warning("still cannot reach Kafka at %s after %.0f s", where, now - started)
                reported_at = now
            if give_up_s is not None and now - started >= give_up_s:
                raise KafkaUnreachable(
                    f"{unreachable_message(brokers)}: gave up after {now - started:.0f} s ({exc})"
                ) from None
            sleep(retry_s)
            continue
        if reported_at is not None:
            logger.warning("reached Kafka at %s after %.0f s", where, clock() - started)
        return parts


def _topic_partitions(client: AdminClient, name: str, timeout_s: float, where: str) -> list[str]:
    # One topic at a time, as Bytewax does, so a broker that auto-creates topics does so.
    meta = client.list_topics(name, timeout=timeout_s)
    tmeta = meta.topics.get(name)
    if tmeta is None or tmeta.error is not None:
        err = tmeta.error if tmeta is not None else None
        if err is not None and err.code() == KafkaError._TRANSPORT:
            raise KafkaException(err)
        why = err.str() if err is not None else "not in the cluster's metadata"
        raise RuntimeError(
            f"cannot read Kafka topic {name!r} at {where}: {why};"
            " create the topics with `makerflow topics create`"
        )
    return [f"{i}-{name}" for i in sorted(tmeta.partitions)]


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


class KeyPartitions:
    """The partition a producer writes each key to: :func:`makerflow.placement.aligned_partition`
    over the topic's partition count, which it learns from the broker once per topic.

    Every makerflow producer (the flows' sinks, :class:`Sender`) places keys this way, so the
    worker that reads a key's partition is the worker its keyed steps run on and events do not
    cross between workers (or processes). A key stays on one partition, as with murmur2; a
    producer outside makerflow (murmur2) may place it elsewhere, which costs those crossings
    and nothing else. Messages without a key go where librdkafka's partitioner sends them.
    """

    def __init__(self, client: Producer, timeout_s: float = 30.0) -> None:
        self._client = client
        self.timeout_s = timeout_s
        self._counts: dict[str, int] = {}
        # (topic, key) -> partition: one dict look-up per message on the sinks' hot path.
        # Keys are markets, accounts, assets and scopes; the bound only guards against a
        # topic keyed by something unbounded.
        self._placed: dict[tuple[str, str | bytes], int] = {}

    MAX_PLACED = 65_536

    def of(self, topic: str, key: str | bytes | None) -> int:
        """The partition for ``key`` on ``topic``; ``-1`` (librdkafka's choice) without a key."""
        if key is None:
            return -1
        placed = self._placed.get((topic, key))
        if placed is not None:
            return placed
        n = self._counts.get(topic) or self._learn(topic)
        part = aligned_partition(key.encode() if isinstance(key, str) else key, n)
        if len(self._placed) >= self.MAX_PLACED:
            self._placed.clear()
        self._placed[(topic, key)] = part
        return part

    def _learn(self, topic: str) -> int:
        deadline = time.monotonic() + self.timeout_s
        problem = "no answer"
        while True:
            left = deadline - time.monotonic()
            try:
                meta = self._client.list_topics(topic, timeout=max(left, 0.1)).topics.get(topic)
            except KafkaException as exc:
                meta, problem = None, str(exc)
            if meta is not None and meta.error is None and meta.partitions:
                self._counts[topic] = len(meta.partitions)
                return self._counts[topic]
            if meta is not None and meta.error is not None:
                problem = str(meta.error)
            if time.monotonic() >= deadline:
                raise KafkaUnreachable(
                    f"cannot learn the partitions of topic {topic!r} within {self.timeout_s:.0f}"
                    f" s ({problem}); is the broker up and the topic created"
                    " (makerflow topics create)?"
                )
            time.sleep(0.1)


def producer(brokers: Sequence[str], **config: Any) -> Producer:
    """A producer with makerflow's settings (idempotent, failures-only delivery reports); with
    :class:`Sender` it places keys like the flows' sinks (:class:`KeyPartitions`)."""
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
    out = Sender(producer(brokers, **config))
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
    out = Sender(producer(brokers, **{"linger.ms": 0, "batch.num.messages": 1, **config}))
    n = 0
    for key, value in values:
        out.send(topic, key, value)
        out.producer.flush(10)
        n += 1
    out.flush()
    return n


class Sender:
    """A producer plus the delivery failures it has seen (only failures are reported)."""

    def __init__(self, p: Producer) -> None:
        self.producer = p
        self.failures: list[str] = []
        self.partitions = KeyPartitions(p)

    def _on_delivery(self, err: Any, msg: Message) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        part = self.partitions.of(topic, key)
        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, partition=part, on_delivery=self._on_delivery
                )
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


class TopicReader:
    """A consumer of every partition of topic ``name`` from offset 0 (no group offsets), for
    reading what a topic holds: :func:`read_topic`. A context manager that closes it."""

    def __init__(self, brokers: Sequence[str], name: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": ",".join(brokers),
                "group.id": f"makerflow-read-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        try:
            meta = self._consumer.list_topics(name, timeout=10)
            self.partitions = sorted(meta.topics[name].partitions)
            self._consumer.assign([TopicPartition(name, p, 0) for p in self.partitions])
        except BaseException:
            self._consumer.close()
            raise

    def read(
        self, *, expected: int | None = None, idle: float = 2.0, timeout: float = 60.0
    ) -> list[Message]:
        """With ``expected``, until that many have come (or ``timeout``). Without, until every
        partition has been read to its end once (a partition-EOF event) and then ``idle``
        seconds have passed with no message: the idle time counts from the end, not from the
        start, so a slow first fetch (a fresh consumer on a busy machine, a broker that
        stalls) never passes for an empty topic. Once at its end, a partition still written
        to (heartbeats) counts as read up to each message: librdkafka reports its end again
        only after a fetch that found nothing, which tansu answers only when its wait is
        over. On tansu the end is the short high watermark (:mod:`makerflow.broker`), and
        the fetch that crosses it carries the rest of its batch."""
        out: list[Message] = []
        reached_end: set[int] = set()
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            batch = self._consumer.consume(10_000, 0.2)
            now = time.monotonic()
            for m in batch:
                err = m.error()
                if err is None:
                    out.append(m)
                    last = now
                elif err.code() == KafkaError._PARTITION_EOF:
                    part = m.partition()
                    if part is not None and part not in reached_end:
                        reached_end.add(part)
                        last = now
            ended = expected is None and len(reached_end) >= len(self.partitions)
            if ended and now - last > idle:
                break
        return out

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_topic(
    brokers: Sequence[str],
    name: str,
    *,
    expected: int | None = None,
    idle: float = 2.0,
    timeout: float = 60.0,
) -> list[Message]:
    """Every message of topic ``name`` from the beginning, in partition order
    (:meth:`TopicReader.read` says until when)."""
    with TopicReader(brokers, name) as reader:
        return reader.read(expected=expected, idle=idle, timeout=timeout)
