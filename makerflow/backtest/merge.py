"""Event-time merge of a backtest's input streams into one order that does not depend on
arrival.

A backtest reads several streams at once (one recorded file per market, or one Kafka
partition per topic), and Bytewax interleaves their batches as they come, differently on
every run and on every number of workers. :class:`ChunkMerger` puts one key's events back
into a single order that is a function of the data alone: by *merge time* (each stream's
running maximum of event time, so a stream's own order is never changed), then stream name,
then the event's position in its stream.

It is the services' merger, :class:`~makerflow.operators.event_merge.EventTimeMerger`, with
the streams as its inputs in name order (its ties go to the input named first), so the
backtest and the services share one ordering rule and one release rule and cannot disagree.
What is the backtest's own is only the wire between the tagged source and the merge: each
source batch reaches every key, as a :class:`Chunk` of the key's events or as a bare
:class:`Progress` mark (an ``advance`` of the merger: the stream sends nothing earlier), and
a stream's end is a Progress at :data:`END` (the merger's ``end``). An event is released once
no stream can still send one that sorts before it. Memory is bounded by how far the streams
drift apart, about a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from makerflow.operators.event_merge import EventTimeMerger

END = 2**63 - 1
"""Merge time of a stream that has ended."""

Item = tuple[int, int, Any]
"""``(merge time, position in its stream, event)``."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Stream ``stream`` will send nothing with a merge time below ``mts``."""

    stream: str
    mts: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A batch of stream ``stream``'s events, :data:`Item` s in stream order, after which the
    stream is at merge time ``mts`` (so it is a progress mark too). Sources send chunks
    rather than one item per event: the dataflow's per-item cost is paid once per batch."""

    stream: str
    items: tuple[Item, ...]
    mts: int


class ChunkMerger:
    """Merges the streams named in ``streams`` (every stream that can send to this key)."""

    def __init__(self, streams: Sequence[str]) -> None:
        if not streams:
            raise ValueError("a merge needs at least one stream")
        names = sorted(streams)
        self.index = {name: i for i, name in enumerate(names)}
        # The merger's inputs are named by rank: a stream's own name (a file path, a Kafka
        # partition) may hold the "|" the merger reads as "part of an input".
        self.merger: EventTimeMerger[Item] = EventTimeMerger([str(i) for i in range(len(names))])

    def push(self, item: Chunk | Progress) -> list[Item]:
        """Take a chunk or a mark; return every item that is safe now, in order."""
        i = self.index.get(item.stream)
        if i is None:
            raise ValueError(f"stream {item.stream!r} is not one of {sorted(self.index)}")
        merger = self.merger
        if isinstance(item, Progress):
            return merger.end(str(i)) if item.mts == END else merger.advance(i, item.mts)
        out: list[Item] = []
        push = merger.push
        for entry in item.items:
            out += push(i, entry[0], entry)
        out += merger.advance(i, item.mts)
        return out

    def flush(self) -> list[Item]:
        """Everything still held, in order (end of input)."""
        return self.merger.flush()
