"""Event-time merge of several input streams into one order that does not depend on arrival.

A backtest reads several streams at once (one recorded file per market, or one Kafka
partition per topic), and Bytewax interleaves their batches as they come, differently on
every run and on every number of workers. :class:`StreamMerger` puts one key's events back
into a single order that is a function of the data alone: by *merge time* (each stream's
running maximum of event time, so a stream's own order is never changed), then stream name,
then the event's position in its stream.

An event is released once no stream can still send one that sorts before it: every other
stream has shown a later merge time (each source partition's batch reaches every key, as a
:class:`Chunk` of the key's events or as a bare :class:`Progress` mark) or has ended (a
Progress at :data:`END`). Memory is bounded by how far the streams drift apart, about a batch.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

END = 2**63 - 1
"""Merge time of a stream that has ended."""


@dataclass(frozen=True, slots=True)
class Tagged:
    """An event of stream ``stream``, ``seq``-th of it, at merge time ``mts``."""

    stream: str
    seq: int
    mts: int
    event: Any


@dataclass(frozen=True, slots=True)
class Progress:
    """Stream ``stream`` will send nothing with a merge time below ``mts``."""

    stream: str
    mts: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A batch of stream ``stream``'s events, ``(merge time, position, event)`` in stream
    order, after which the stream is at merge time ``mts`` (so it is a progress mark too).
    Sources send chunks rather than one item per event: the dataflow's per-item cost is paid
    once per batch."""

    stream: str
    items: tuple[tuple[int, int, Any], ...]
    mts: int


class StreamMerger:
    """Merges the streams named in ``streams`` (every stream that can send to this key)."""

    def __init__(self, streams: tuple[str, ...]) -> None:
        if not streams:
            raise ValueError("a merge needs at least one stream")
        self.seen: dict[str, int] = dict.fromkeys(streams, -1)
        self.heap: list[tuple[int, str, int, Any]] = []

    def push(self, item: Tagged | Progress | Chunk) -> None:
        stream = item.stream
        if stream not in self.seen:
            raise ValueError(f"stream {stream!r} is not one of {sorted(self.seen)}")
        if item.mts > self.seen[stream]:
            self.seen[stream] = item.mts
        if isinstance(item, Chunk):
            heap, push = self.heap, heapq.heappush
            for mts, seq, ev in item.items:
                push(heap, (mts, stream, seq, ev))
        elif isinstance(item, Tagged):
            heapq.heappush(self.heap, (item.mts, stream, item.seq, item.event))

    def release(self, out: list[Any]) -> None:
        """Append ``(merge time, event)`` for every event that is safe now, in order."""
        heap = self.heap
        if not heap:
            return
        # The two smallest (merge time, stream) marks: an event of stream s must sort before
        # every other stream's mark.
        marks = heapq.nsmallest(2, ((t, s) for s, t in self.seen.items()))
        while heap:
            t, s, _, ev = heap[0]
            bound = marks[0] if marks[0][1] != s else (marks[1] if len(marks) > 1 else None)
            if bound is not None and bound[0] != END and not (t, s) < bound:
                break
            heapq.heappop(heap)
            out.append((t, ev))

    def flush(self, out: list[Any]) -> None:
        """Everything still held, in order (end of input)."""
        while self.heap:
            t, _, _, ev = heapq.heappop(self.heap)
            out.append((t, ev))

    @property
    def ended(self) -> bool:
        return all(t == END for t in self.seen.values())
