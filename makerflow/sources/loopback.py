"""An in-process channel from a sink back to a source: the embedded stand-in for a topic.

A Bytewax dataflow has no cycles, yet the quoter must hear what execution did with its
intents (a post-only order the exchange refused is not resting). Between services that path is
the ``orders.events`` topic; in one process it is this channel: execution's events go into a
:class:`Loopback` sink and come out of its source, which merges into the quoter's input like
any other stream. Single-process only (``run_main``); across processes use the topic.
"""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

X = TypeVar("X")

_IDLE = timedelta(milliseconds=20)


class Loopback(Generic[X]):
    """One channel: ``sink()`` puts, ``source()`` takes, in order."""

    def __init__(self, max_batch: int = 1000) -> None:
        self._queue: queue.SimpleQueue[X] = queue.SimpleQueue()
        self.max_batch = max_batch

    def sink(self) -> _LoopbackSink[X]:
        return _LoopbackSink(self._queue)

    def source(self) -> _LoopbackSource[X]:
        return _LoopbackSource(self._queue, self.max_batch)


class _SinkPart(StatelessSinkPartition[X]):
    def __init__(self, q: queue.SimpleQueue[X]) -> None:
        self._q = q

    def write_batch(self, items: list[X]) -> None:
        for item in items:
            self._q.put(item)


class _LoopbackSink(DynamicSink[X]):
    def __init__(self, q: queue.SimpleQueue[X]) -> None:
        self._q = q

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPart[X]:
        return _SinkPart(self._q)


class _SourcePart(StatefulSourcePartition[X, None]):
    def __init__(self, q: queue.SimpleQueue[X], max_batch: int) -> None:
        self._q = q
        self._max = max_batch
        self._idle = False

    def next_batch(self) -> list[X]:
        out: list[X] = []
        try:
            while len(out) < self._max:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        self._idle = not out
        return out

    def next_awake(self) -> datetime | None:
        # Poll gently while the channel is empty, at once while it has items.
        return datetime.now(UTC) + _IDLE if self._idle else None

    def snapshot(self) -> None:
        return None


class _LoopbackSource(FixedPartitionedSource[X, None]):
    """One partition: the channel is local to this process, so one worker reads it."""

    def __init__(self, q: queue.SimpleQueue[X], max_batch: int) -> None:
        self._q = q
        self._max = max_batch

    def list_parts(self) -> list[str]:
        return ["loopback"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _SourcePart[X]:
        return _SourcePart(self._q, self._max)
