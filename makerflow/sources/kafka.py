"""Typed Kafka input: Bytewax's Kafka connector, then decode and validate into events.

Every message in becomes either an event on ``oks`` or a :class:`DeadLetter` on ``errs``
(consumer errors included), so ``in == out + dead letters`` holds for every run.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.connectors.kafka import (
    KafkaError,
    KafkaSource,
    KafkaSourceMessage,
    _KafkaSourcePartition,
)
from bytewax.dataflow import Dataflow, Stream, operator
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

from makerflow import metrics
from makerflow.kafka_admin import LibrdkafkaLog, list_partitions
from makerflow.schemas.codec import EventCodec, EventDecodeError, dead_letter
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.markers import CaughtUp, InputEnded
from makerflow.schemas.topics import (
    INDEX,
    MD_BOOK,
    MD_TRADES,
    ORDER_INTENTS,
    RISK_STATE,
    TICKS,
    Topic,
)

E = TypeVar("E")

_MARKERS = (InputEnded, CaughtUp)
"""Items a source puts between the messages: passed on, neither events nor dead letters."""

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]

CONSUMER_DEFAULTS: dict[str, Any] = {
    # How long the broker may hold a fetch that finds no data. Kafka and Redpanda answer a
    # waiting fetch as soon as data arrives, so there it only paces an idle consumer; tansu
    # (makerflow's embedded broker) answers only when the wait is over, so there it is the
    # delay of every message that arrives at an idle consumer (librdkafka's default, 500 ms,
    # was most of a book update's 0.5 s to an intent). The cost is a fetch per wait per idle
    # consumer (on tansu ~4 % of a core each at 5 ms): only the consumers of
    # LOW_LATENCY_TOPICS get it. Measured in benchmarks/service_latency.py.
    "fetch.wait.max.ms": 5,
}
LOW_LATENCY_TOPICS = frozenset(
    t.name for t in (MD_BOOK, MD_TRADES, TICKS, INDEX, RISK_STATE, ORDER_INTENTS)
)
"""The path from market data to an order (and the halt that stops it): the topics whose
consumers get :data:`CONSUMER_DEFAULTS`. The others (fills, order events, balances, control,
...) keep librdkafka's defaults."""

CONSUMER_MEMORY: dict[str, Any] = {
    # What a lagging consumer may hold in its prefetch queue: librdkafka fetches ahead until
    # 100 000 messages or 64 MiB per partition (each consumer here has one), so a service
    # that falls behind keeps its backlog in its own heap instead of on the broker, and glibc
    # keeps that heap once it is free again. Measured (benchmarks/service_memory.py, ticks):
    # up to 50 000 md.trades messages (9.4 MiB) queued and the heap 11 -> 39 MiB; with this
    # bound about 1 MiB per partition (on tansu a little over the bound plus one fetch).
    "queued.max.messages.kbytes": 256,
    "max.partition.fetch.bytes": 256 * 1024,
    # Once the queue is over the bound, librdkafka waits this long before fetching again
    # (default 1000 ms): with a bound this small a draining consumer empties its queue long
    # before that, and the ticks service drained a backlog at 0.6x the rate; 10 ms costs a
    # few more fetch requests while a consumer is behind, nothing while it keeps up.
    "fetch.queue.backoff.ms": 10,
}
"""Prefetch bounds every consumer gets (all topics: any of them can lag)."""

BATCH_SIZE = 1000
"""Messages a partition hands over per poll: Bytewax's default, kept on purpose. Only a
consumer that is behind fills a batch, and everything a batch becomes is alive at once, so
smaller batches would lower the peak a lag leaves in Python's arenas (ticks 22 MiB of arenas
after a lag with 1000, 16 with 100). But every batch ends with one flush round trip to the
broker in the sink: with 100 the ticks service drained a backlog at 0.73-0.76x the rate and
2 processes scaled 1.29-1.36x one worker instead of 1.59-1.78x (``benchmarks/scaling.py``,
same quiet machine), while the RSS ratio did not measurably improve (ticks 1.147 against
1.142 in one side-by-side run). The prefetch bound and the heap trimmer are what keep a past
lag from staying resident; ``kafka_input(batch_size=...)`` trades speed for memory."""


@dataclass(frozen=True)
class EventStreams(Generic[E]):
    """The two outputs of a decoding step."""

    oks: Stream[E]
    """Valid events."""
    errs: Stream[DeadLetter]
    """Everything that could not become an event, with the reason."""


def _broker_ts_ns(msg: RawMessage) -> int:
    # The broker's timestamp of the message (ms); it is the best time a dead letter has.
    stamp: tuple[int, int] | None = msg.timestamp
    if not stamp:
        return 0
    return max(stamp[1], 0) * 1_000_000


class MessageDecoder(Generic[E]):
    """Turns Kafka messages into events or dead letters, counting both.

    :meth:`decode_batch` is the step's hot path: counters rise once per batch (exact counts,
    one lock each instead of one per message).
    """

    def __init__(self, step: str, codec: EventCodec[E]) -> None:
        self.step = step
        self.codec = codec
        self._in = metrics.EVENTS_IN.labels(step=step)
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        self._lag = metrics.EVENT_TIME_LAG.labels(step=step)

    def __call__(self, msg: RawMessage | KafkaError[bytes | None, bytes | None]) -> Any:
        """The event in one message, or its :class:`DeadLetter`."""
        out = self.decode_batch([msg])[0]
        return out.letter if type(out) is Rejected else out

    def decode_batch(
        self, msgs: list[RawMessage | KafkaError[bytes | None, bytes | None]]
    ) -> list[E | Rejected]:
        """One output per message, in order: the event, or its dead letter wrapped in
        :class:`Rejected`."""
        out: list[E | Rejected] = []
        append = out.append
        decode = self.codec.decode
        dead = 0
        markers = 0
        for msg in msgs:
            if type(msg) in _MARKERS:
                # Not a message: it passes on as it is, neither an event nor a letter.
                append(msg)  # type: ignore[arg-type]
                markers += 1
                continue
            if isinstance(msg, KafkaError):
                reason = f"kafka consumer error: {msg.err}"
                src = msg.msg
            else:
                try:
                    append(decode(msg.value))
                    continue
                except EventDecodeError as exc:
                    reason = str(exc)
                src = msg
            letter = dead_letter(
                self.step,
                reason,
                src.value,
                ts=_broker_ts_ns(src),
                key=src.key,
                topic=src.topic,
                partition=src.partition,
                offset=src.offset,
            )
            append(Rejected(letter))
            dead += 1
        self._in.inc(len(msgs) - markers)
        if dead:
            self._dead.inc(dead)
        self._observe_lag(msgs, out)
        return out

    def _observe_lag(self, msgs: list[Any], out: list[Any]) -> None:
        # Event-time lag: when the broker stamped the batch's last message minus the event's
        # own time. Both are data, so no clock is read; once per batch keeps it cheap.
        last_msg, last_out = msgs[-1] if msgs else None, out[-1] if out else None
        ts = getattr(last_out, "ts", None)
        if isinstance(last_msg, KafkaSourceMessage) and isinstance(ts, int):
            broker_ns = _broker_ts_ns(last_msg)
            if broker_ns:
                self._lag.set((broker_ns - ts) / 1e9)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dead letter on its way out of :meth:`MessageDecoder.decode_batch`.

    Wrapped so that routing never mistakes a decoded ``DeadLetter`` *event* (a flow that reads
    the dead-letter topic) for a failure of this step.
    """

    letter: DeadLetter


def _is_event(x: object) -> bool:
    return type(x) is not Rejected


def _unwrap(x: Rejected) -> DeadLetter:
    return x.letter


@operator
def decode_events(
    step_id: str,
    up: Stream[RawMessage | KafkaError[bytes | None, bytes | None]],
    codec: EventCodec[E],
    step: str | None = None,
) -> EventStreams[E]:
    """Decode raw Kafka messages with ``codec`` into events and dead letters.

    ``step`` names the step in dead letters and metrics (default: ``step_id``).
    """
    decoder = MessageDecoder(step or step_id, codec)
    decoded = op.flat_map_batch("decode", up, decoder.decode_batch)
    split = op.branch("split", decoded, _is_event)
    errs = op.map("unwrap", split.falses, _unwrap)  # type: ignore[arg-type]
    return EventStreams(oks=split.trues, errs=errs)  # type: ignore[arg-type]


def consumer_lag(json_stats: str, topic: str, partition: int) -> int | None:
    """Messages between what the application has consumed and the partition's end, from a
    librdkafka statistics document; ``None`` while either is unknown.

    librdkafka's own ``consumer_lag`` is measured from the *committed* offset, and Bytewax
    commits nothing (its recovery keeps offsets), so the lag is end (``ls_offset``) minus
    ``app_offset``. On tansu the end can read short (see ``makerflow.broker``): never below 0.
    """
    try:
        part = json.loads(json_stats)["topics"][topic]["partitions"][str(partition)]
        end, consumed = int(part["ls_offset"]), int(part["app_offset"])
    except (KeyError, ValueError, TypeError):
        return None
    if end < 0 or consumed < 0:
        return None
    return max(end - consumed, 0)


class _ConsumeWithoutWaiting:
    """The partition's consumer, with ``consume`` never waiting for a batch to fill.

    Bytewax 0.21.1's partition calls ``consume(batch_size, 0.001)``, and librdkafka's
    ``consume`` waits the whole timeout unless the batch fills: an idle partition blocks its
    worker for 1 ms per poll, and a worker polls its partitions one after the other, so a
    message waits for up to one millisecond per partition of the worker (the quoter reads eight
    topics). Returning at once with what the client has already fetched makes a round cost
    microseconds; the runtime itself waits its 1 ms cooldown after an empty batch before
    polling that partition again, and parks the worker meanwhile, so an idle service does not
    spin.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    def consume(self, num_messages: int, timeout: float) -> Any:
        return self._consumer.consume(num_messages, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


# Batches that the Kafka partitions of this process have handed over (see
# ``_LagReportingPartition.next_batch``). Two worker threads may race on it; a lost increment
# only costs a marker, and what it would have released then waits for the merge's bound.
_batches_with_data = 0


class _LagReportingPartition(_KafkaSourcePartition):
    """Bytewax's Kafka partition, also publishing ``makerflow_kafka_consumer_lag``, whose
    polls do not wait (:class:`_ConsumeWithoutWaiting`).

    The connector already receives librdkafka's statistics every second for its own gauge; this
    reuses that callback (no extra broker calls) for the metric the ConsumerLagHigh alert reads.

    With ``end_markers`` (bounded reads only), the batch after the partition's last one is a
    single :class:`~makerflow.schemas.markers.InputEnded`, so the steps downstream learn, in
    order with the messages, that nothing more comes from this partition.
    """

    end_markers = False
    partitions: int | None = None
    """The topic's partition count, as listed at the start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumer = _ConsumeWithoutWaiting(self._consumer)  # type: ignore[assignment]
        self.caught_up_every_ns: int | None = None
        """Send :class:`CaughtUp` markers this often while caught up (None: never)."""
        self.caught_up_once = False
        """Send the markers once, the first time the partition is caught up, then never."""
        self._keys: set[bytes] = set()
        """The keys to mark: those seen here, and any the source was told to mark anyway."""
        self._marked_at = 0
        self._seen_at_marks = (-1, -1)  # _batches_with_data at the last two markers
        self._tp = TopicPartition(self._topic, self._part_idx)

    def next_batch(self) -> list[Any]:
        global _batches_with_data
        if self._eof:
            # A bounded read's partition at its end (the next poll ends it): caught up for
            # good, so a marker still owed goes out, then the end marker.
            ends: list[Any] = []
            if self.caught_up_once and self.caught_up_every_ns is not None:
                self.caught_up_every_ns = None
                ends += self._marks()
            if self.end_markers:
                self.end_markers = False
                ends.append(InputEnded(self._topic, self._part_idx, self._partition_count()))
            if ends:
                return ends
        batch: list[Any] = super().next_batch()
        if batch:
            # Any partition's data counts: a trade held for md.book's markers came on md.trades.
            _batches_with_data += 1
        every = self.caught_up_every_ns
        if every is None:
            return batch
        if batch:
            keys = self._keys
            for m in batch:
                if m.key is not None and m.key not in keys:
                    keys.add(m.key)
            return batch
        now = time.monotonic_ns()
        if not self._keys or now - self._marked_at < every:
            return batch
        # A merge releases what came before the marker before last, so two markers after the
        # last data in this process there is nothing left for one to release: an idle
        # service sends none (a market held in another process waits for the merge's bound).
        seen = _batches_with_data
        if seen == self._seen_at_marks[0]:
            return batch
        # Caught up: nothing unread here (the poll was empty) and the offset at the end the
        # broker reported with its last fetch answer (tansu's short end is a batch's first
        # offset + 1: the whole batch came with it, so this still means all was handed over).
        low, end = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if end < 0 or self._position(low) < end:
            return batch
        self._marked_at = now
        self._seen_at_marks = (self._seen_at_marks[1], seen)
        if self.caught_up_once:
            self.caught_up_every_ns = None
        return self._marks()

    def _marks(self) -> list[CaughtUp]:
        topic, part, parts = self._topic, self._part_idx, self._partition_count()
        return [
            CaughtUp(k.decode(errors="replace"), topic, part, parts) for k in sorted(self._keys)
        ]

    def _position(self, low: int) -> int:
        """The offset read next. Before the first message it is where the consumer was
        told to start: the partition's first offset (``low``, -1001 until the statistics
        report it: 0 then), or its end (caught up as soon as the broker has answered)."""
        if self._offset >= 0:
            return self._offset
        if self._offset == OFFSET_END:
            return sys.maxsize
        return max(low, 0)

    def _partition_count(self) -> int:
        if self.partitions is None:
            # Not listed in this process: ask once, of the consumer's own connection.
            meta = self._consumer.list_topics(self._topic, timeout=10.0)
            self.partitions = len(meta.topics[self._topic].partitions)
        return self.partitions

    def _process_stats(self, json_stats: str) -> None:
        super()._process_stats(json_stats)
        lag = consumer_lag(json_stats, self._topic, self._part_idx)
        if lag is not None:
            metrics.CONSUMER_LAG.labels(topic=self._topic, partition=str(self._part_idx)).set(lag)


class LagReportingKafkaSource(KafkaSource):
    """:class:`KafkaSource` whose partitions report consumer lag (bytewax 0.21.1's
    ``build_part`` with the partition class swapped), and that says clearly when it cannot
    reach Kafka.

    Bytewax's own ``list_parts`` waits forever for an unreachable broker while librdkafka
    prints a connect failure every reconnect backoff, and the service says nothing of its own.
    Here the listing waits with one "cannot reach Kafka at ..." (and a reminder a minute),
    and the consumers' librdkafka lines go through logging with repeats held back.
    """

    end_markers = False
    """Send an :class:`InputEnded` after each partition's last message (``tail=False``)."""
    partition_counts: dict[str, int] | None = None

    def __init__(
        self,
        *args: Any,
        caught_up_markers: bool = False,
        mark_keys: Sequence[str] = (),
        caught_up_once: bool = False,
        **kwargs: Any,
    ) -> None:
        if len(args) < 6:  # batch_size is the connector's sixth argument
            kwargs.setdefault("batch_size", BATCH_SIZE)
        super().__init__(*args, **kwargs)
        self.caught_up_markers = caught_up_markers
        """Whether a caught-up partition sends :class:`CaughtUp` markers for its keys."""
        self.mark_keys = tuple(mark_keys)
        """Keys every partition marks even if none of its messages has one (a step waiting
        for a marker of each partition learns that a partition without its key is read)."""
        self.caught_up_once = caught_up_once
        """Each partition sends its markers once, the first time it is caught up."""

    def list_parts(self) -> list[str]:
        brokers, topics = list(self._brokers), list(self._topics)
        parts = list_partitions(brokers, topics, add_config=self._add_config)
        self._note_partition_counts(parts)
        return parts

    def _note_partition_counts(self, parts: list[str]) -> None:
        # Every worker lists the partitions before building its own: the end markers
        # take the topic's partition count from here, without a broker call at the end.
        counts: dict[str, int] = {}
        for p in parts:
            topic = p.split("-", 1)[1]
            counts[topic] = counts.get(topic, 0) + 1
        self.partition_counts = counts

    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka settings of every partition's consumer: the connector's,
        :data:`CONSUMER_MEMORY`, :data:`CONSUMER_DEFAULTS` when every topic is one of
        :data:`LOW_LATENCY_TOPICS`, then the source's ``add_config``."""
        fast = all(topic in LOW_LATENCY_TOPICS for topic in self._topics)
        return {
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
            **CONSUMER_MEMORY,
            **(CONSUMER_DEFAULTS if fast else {}),
            **self._add_config,
        }

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _KafkaSourcePartition:
        idx, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(f"cannot resume partition {for_part!r}: not one of {self._topics}")
        config = {"logger": LibrdkafkaLog(), **self.consumer_config()}
        part = _LagReportingPartition(
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset,
            resume_state,
            self._batch_size,
            self._raise_on_errors,
        )
        part.end_markers = self.end_markers and not self._tail
        if self.partition_counts is not None:
            part.partitions = self.partition_counts.get(topic)
        if self.caught_up_markers:
            # One whole fetch (plus a millisecond) between two markers: the second one is
            # from a fetch answered after the first was sent.
            part.caught_up_every_ns = (int(config.get("fetch.wait.max.ms", 500)) + 1) * 1_000_000
            part.caught_up_once = self.caught_up_once
            part._keys.update(k.encode() for k in self.mark_keys)
        return part


@operator
def kafka_input(
    step_id: str,
    flow: Dataflow,
    *,
    brokers: Sequence[str],
    topic: Topic[E],
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    add_config: dict[str, str] | None = None,
    batch_size: int = BATCH_SIZE,
    end_markers: bool = False,
    caught_up_markers: bool = False,
    mark_keys: Sequence[str] = (),
    caught_up_once: bool = False,
) -> EventStreams[E]:
    """Read ``topic`` (one Bytewax partition per Kafka partition) as typed events.

    With ``tail=False`` the input ends at the end of every partition; with ``end_markers``
    too, ``oks`` then carries one :class:`~makerflow.schemas.markers.InputEnded` per
    partition after its last event (for operators that merge inputs in event time). On the
    tansu broker the reported end (high watermark) can fall short of the real one (see
    ``makerflow.broker``); the consumer still reads whole batches, so records past the
    reported end that arrived in the same batch are kept.

    ``caught_up_markers``: the events come with :class:`~makerflow.schemas.markers.CaughtUp`
    markers (on ``oks``) while a partition has nothing pending, for a live merge downstream;
    every partition also marks ``mark_keys``, seen there or not; with ``caught_up_once``,
    each partition marks once, the first time it is caught up.
    """
    # The connector's source directly, not ``kop.input``: that one splits consumer errors off
    # and this step would merge them straight back, two extra Python calls per message.
    source = LagReportingKafkaSource(
        list(brokers),
        [topic.name],
        tail=tail,
        starting_offset=starting_offset,
        add_config=add_config,
        batch_size=batch_size,
        raise_on_errors=False,
        caught_up_markers=caught_up_markers,
        mark_keys=mark_keys,
        caught_up_once=caught_up_once,
    )
    source.end_markers = end_markers
    raw = op.input("kafka", flow, source)
    return decode_events("decode", raw, topic.codec, step=step_id)
