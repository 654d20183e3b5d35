"""A backtest's inputs: recorded files or recorded Kafka topics, as tagged streams.

Every source partition (one recorded market, or one Kafka topic-partition) is a *stream*.
Each batch of its events leaves as one :class:`~makerflow.backtest.merge.Chunk` (every event
with its position and merge time), which also says how far the stream has got; a final
:class:`~makerflow.backtest.merge.Progress` says it ended. That is what lets each key merge its
streams in an order that depends on the data alone.

Kafka replays are bounded by the end offsets taken when the backtest starts
(:func:`plan_kafka`), from the beginning, from given offsets, or from a time
(``offsets_for_times``: the broker's message timestamps). On the tansu broker the end offset
reads short (its high watermark is the last batch's base offset + 1, see
:mod:`makerflow.broker`): a record at or past the end offset still belongs to the replay when
the broker stamped it no later than the start, so no record of the last batch is lost, and
records produced after the start are not read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from makerflow.backtest.merge import END, Chunk, Progress
from makerflow.schemas.codec import EventDecodeError, dead_letter
from makerflow.schemas.topics import TOPICS, Topic
from makerflow.sources.formats.binance import BinanceRawParser
from makerflow.sources.recorded import RecordedSource, open_lines

logger = logging.getLogger(__name__)

ProgressHook = Callable[[str, int, int, Any], None]
"""Called after each batch with (stream, events in the batch, the stream's merge time, the
inner partition's position: ``(file index, line)`` of a recording, the next offset of a
Kafka partition)."""


class _TaggingPartition(StatefulSourcePartition[Chunk | Progress, Any]):
    """Wraps a partition: each batch of its events becomes one :class:`Chunk` of tagged
    events (a progress mark too); the end, a Progress at END."""

    def __init__(
        self,
        name: str,
        inner: StatefulSourcePartition[Any, Any],
        resume: tuple[int, int, Any] | None,
        hook: ProgressHook | None,
    ) -> None:
        self.name = name
        self.inner = inner
        self.seq, self.mts = (0, -1) if resume is None else (resume[0], resume[1])
        self.hook = hook
        self.ended = False

    def next_batch(self) -> Iterable[Chunk | Progress]:
        if self.ended:
            raise StopIteration()
        try:
            batch = list(self.inner.next_batch())
        except StopIteration:
            self.ended = True
            return [Progress(self.name, END)]
        items: list[tuple[int, int, Any]] = []
        seq, mts = self.seq, self.mts
        for ev in batch:
            ts = getattr(ev, "ts", 0) or 0
            if ts > mts:
                mts = ts
            items.append((mts, seq, ev))
            seq += 1
        self.seq, self.mts = seq, mts
        out: list[Chunk | Progress] = [Chunk(self.name, tuple(items), mts)]
        if self.hook is not None and batch:
            self.hook(self.name, len(batch), mts, self.inner.snapshot())
        return out

    def next_awake(self) -> Any:
        return self.inner.next_awake()

    def snapshot(self) -> tuple[int, int, Any]:
        return (self.seq, self.mts, self.inner.snapshot())

    def close(self) -> None:
        self.inner.close()


class TaggedSource(FixedPartitionedSource[Chunk | Progress, Any]):
    """Any partitioned source (its partitions are the streams), tagged."""

    def __init__(
        self, inner: FixedPartitionedSource[Any, Any], hook: ProgressHook | None = None
    ) -> None:
        self.inner = inner
        self.hook = hook

    def list_parts(self) -> list[str]:
        return list(self.inner.list_parts())

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _TaggingPartition:
        inner_resume = None if resume_state is None else resume_state[2]
        inner = self.inner.build_part(step_id, for_part, inner_resume)
        return _TaggingPartition(for_part, inner, resume_state, self.hook)


class _SkipBookTicker:
    """A Binance raw parser that drops ``bookTicker`` frames before decoding them.

    The parser decodes every frame and returns nothing for a ``bookTicker`` (the L2 diffs
    give the book); in a recording two lines in three are those, so a byte test first saves
    a JSON decode each. Only a whole frame (``<ns> {"stream":"...@bookTicker",...}}``) is
    dropped here; anything else still goes to the parser (and a bad line to the dead
    letters)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def feed(self, line: bytes) -> list[Any]:
        head = line[:64]
        if b'@bookTicker","data":{' in head and line.rstrip().endswith(b"}}"):
            return []
        return list(self.inner.feed(line))

    def flush(self) -> list[Any]:
        return list(self.inner.flush())

    def state(self) -> Any:
        return self.inner.state()

    def restore(self, state: Any) -> None:
        self.inner.restore(state)


class _RecordedTaggedSource(TaggedSource):
    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _TaggingPartition:
        part = super().build_part(step_id, for_part, resume_state)
        parser = getattr(part.inner, "parser", None)
        if isinstance(parser, BinanceRawParser):
            part.inner.parser = _SkipBookTicker(parser)  # type: ignore[attr-defined]
        return part


def recorded_source(
    paths: str | Path | Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
    control: Sequence[str | Path] = (),
    hook: ProgressHook | None = None,
) -> TaggedSource:
    inner: FixedPartitionedSource[Any, Any] = RecordedSource(paths, venue=venue, symbol=symbol)
    if control:
        inner = WithControl(inner, control)
    return _RecordedTaggedSource(inner, hook)


class _ControlFilePartition(StatefulSourcePartition[Any, int]):
    """Control commands (``halt``, ``resume``, ``set_params``), one JSON event per line."""

    def __init__(self, path: Path, resume: int | None) -> None:
        self.path = path
        self.line = resume or 0
        self.lines = path.read_bytes().splitlines()
        self.codec = TOPICS["control"].codec

    def next_batch(self) -> list[Any]:
        if self.line >= len(self.lines):
            raise StopIteration()
        out: list[Any] = []
        for raw in self.lines[self.line : self.line + 1000]:
            self.line += 1
            if not raw.strip():
                continue
            try:
                out.append(self.codec.decode(raw))
            except EventDecodeError as exc:
                out.append(dead_letter(f"backtest.control:{self.path.name}", str(exc), raw, ts=0))
        return out

    def snapshot(self) -> int:
        return self.line


class WithControl(FixedPartitionedSource[Any, Any]):
    """A source plus control-command files, each file one more stream (``control:<file>``)."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any], control: Sequence[str | Path]):
        self.inner = inner
        self.control = {f"control:{Path(p).name}": Path(p) for p in control}

    def list_parts(self) -> list[str]:
        return [*self.inner.list_parts(), *self.control]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
        if for_part in self.control:
            return _ControlFilePartition(self.control[for_part], resume_state)
        return self.inner.build_part(step_id, for_part, resume_state)


def count_lines(paths: Iterable[Path]) -> int:
    """Lines of the recorded files (what the progress bar counts up to)."""
    n = 0
    for p in paths:
        with open_lines(p) as f:
            while chunk := f.read(1 << 20):
                n += chunk.count(b"\n")
    return n


# --- Kafka --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionPlan:
    """What to replay of one topic-partition: offsets ``[start, end)`` (and, past ``end``,
    the records the broker stamped at or before ``started_ms``)."""

    topic: str
    partition: int
    start: int
    end: int
    started_ms: int
    from_ms: int | None = None
    """Replay from the first record the broker stamped at or after this time: the start
    offset the broker gives for it is a lower bound (tansu answers with the base offset of
    the batch holding it), so earlier records of that batch are skipped as they are read."""

    @property
    def name(self) -> str:
        return f"{self.topic}#{self.partition}"


def plan_kafka(
    brokers: Sequence[str],
    topics: Sequence[str],
    *,
    from_time_ms: int | None = None,
    offsets: dict[tuple[str, int], int] | None = None,
    timeout: float = 10.0,
) -> list[PartitionPlan]:
    """Start and end offsets of every partition of ``topics``, taken now (the edge reads
    the wall clock once, for the end bound). Start: ``offsets`` where given, else the first
    offset at or after ``from_time_ms`` (``offsets_for_times``), else the beginning."""
    consumer = Consumer(
        {"bootstrap.servers": ",".join(brokers), "group.id": "makerflow-backtest-plan"}
    )
    started_ms = int(time.time() * 1000)
    try:
        meta = consumer.list_topics(timeout=timeout)
        plans: list[PartitionPlan] = []
        for topic in topics:
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                raise ValueError(f"topic {topic!r} is not on the brokers {','.join(brokers)}")
            parts = sorted(tmeta.partitions)
            wanted: dict[int, int] = {}
            if from_time_ms is not None:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, from_time_ms) for p in parts], timeout=timeout
                )
                wanted = {tp.partition: tp.offset for tp in found}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout
                )
                start = low
                if offsets and (topic, p) in offsets:
                    start = max(offsets[(topic, p)], low)
                elif p in wanted:
                    # No record at or after the time: nothing to replay on this partition.
                    off = wanted[p]
                    start = high if off in (-1, OFFSET_END) or off < 0 else off
                from_ms = (
                    from_time_ms
                    if p in wanted and not (offsets and (topic, p) in offsets)
                    else None
                )
                plans.append(PartitionPlan(topic, p, start, high, started_ms, from_ms))
        return plans
    finally:
        consumer.close()


class _KafkaReplayPartition(StatefulSourcePartition[Any, int]):
    def __init__(
        self,
        brokers: Sequence[str],
        topic: Topic[Any],
        plan: PartitionPlan,
        resume: int | None,
        batch_size: int,
    ) -> None:
        self.topic = topic
        self.plan = plan
        self.next_offset = plan.start if resume is None else resume
        self.batch_size = batch_size
        # Even with start >= end there may be records of the last batch to read (the
        # watermark quirk): the first fetch says.
        self.done = False
        self.consumer: Consumer | None = Consumer(
            {
                "bootstrap.servers": ",".join(brokers),
                "group.id": "makerflow-backtest",
                "enable.auto.commit": "false",
                "enable.partition.eof": "true",
            }
        )
        self.consumer.assign([TopicPartition(plan.topic, plan.partition, self.next_offset)])
        self.step = f"backtest.kafka:{plan.name}"
        self.skipping = plan.from_ms is not None and resume is None

    def next_batch(self) -> list[Any]:
        if self.done or self.consumer is None:
            raise StopIteration()
        out: list[Any] = []
        plan = self.plan
        for msg in self.consumer.consume(self.batch_size, timeout=0.1):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.done = True
                    break
                out.append(
                    dead_letter(
                        self.step,
                        f"kafka consumer error: {err}",
                        b"",
                        ts=0,
                        topic=plan.topic,
                        partition=plan.partition,
                    )
                )
                continue
            offset = int(msg.offset() or 0)
            stamp = msg.timestamp()[1]
            if offset >= plan.end and stamp > plan.started_ms:
                self.done = True  # produced after the backtest started
                break
            self.next_offset = offset + 1
            if self.skipping:
                assert plan.from_ms is not None
                if stamp < plan.from_ms:
                    continue
                self.skipping = False
            value = msg.value()
            try:
                out.append(self.topic.codec.decode(value))
            except EventDecodeError as exc:
                out.append(
                    dead_letter(
                        self.step,
                        str(exc),
                        value or b"",
                        ts=max(stamp, 0) * 1_000_000,
                        key=msg.key(),
                        topic=plan.topic,
                        partition=plan.partition,
                        offset=offset,
                    )
                )
        if not out and self.done:
            raise StopIteration()
        return out

    def snapshot(self) -> int:
        return self.next_offset

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


class KafkaReplaySource(FixedPartitionedSource[Any, int]):
    """Recorded topics, one partition per topic-partition, bounded by ``plans``."""

    def __init__(
        self,
        brokers: Sequence[str],
        topics: dict[str, Topic[Any]],
        plans: Sequence[PartitionPlan],
        batch_size: int = 1000,
    ) -> None:
        self.brokers = list(brokers)
        self.topics = topics
        self.plans = {p.name: p for p in plans}
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return sorted(self.plans)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _KafkaReplayPartition:
        plan = self.plans[for_part]
        return _KafkaReplayPartition(
            self.brokers, self.topics[plan.topic], plan, resume_state, self.batch_size
        )
