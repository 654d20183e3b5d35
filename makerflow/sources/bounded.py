"""Bounding live sources, so that an embedded run (the demo, a paper-trading session of fixed
length) ends by itself.

A dataflow ends when every input has ended, and live inputs (the exchange's private stream,
chain pollers) never end on their own. :class:`RunLatch` records when the *finite* inputs
(recorded market data) are exhausted; :class:`StopWhen` wraps a live source and ends it once
the latch says so, after a grace period that lets the last orders' fills come back. Reading the
wall clock here is fine: this is an edge, and the clock only decides liveness, never results.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

X = TypeVar("X")
S = TypeVar("S")

_POLL = timedelta(milliseconds=200)


class RunLatch:
    """Counts finite partitions still running; knows when all are done and since when."""

    def __init__(self, grace_s: float = 0.0, max_runtime_s: float | None = None) -> None:
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._open = 0
        self._seen = False
        self._done_at: float | None = None
        self._deadline = None if max_runtime_s is None else time.monotonic() + max_runtime_s

    def opened(self) -> None:
        with self._lock:
            self._open += 1
            self._seen = True
            self._done_at = None

    def closed(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open <= 0:
                self._done_at = time.monotonic()

    def deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def should_stop(self) -> bool:
        if self.deadline_passed():
            return True
        now = time.monotonic()
        with self._lock:
            return self._done_at is not None and now - self._done_at >= self.grace_s


class _Finite(StatefulSourcePartition[X, S]):
    def __init__(self, inner: StatefulSourcePartition[X, S], latch: RunLatch) -> None:
        self._inner = inner
        self._latch = latch
        self._ended = False
        latch.opened()

    def next_batch(self) -> Iterable[X]:
        if self._latch.deadline_passed():
            # The run's time is up: a finite input ends early, like a live one.
            self._end()
            raise StopIteration
        try:
            return self._inner.next_batch()
        except StopIteration:
            self._end()
            raise

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._latch.closed()

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._end()
        self._inner.close()


class CountedFinite(FixedPartitionedSource[X, S], Generic[X, S]):
    """A finite source whose partitions report to ``latch`` when they are exhausted."""

    def __init__(self, inner: FixedPartitionedSource[X, S], latch: RunLatch) -> None:
        self.inner = inner
        self.latch = latch

    def list_parts(self) -> list[str]:
        return list(self.inner.list_parts())

    def build_part(self, step_id: str, for_part: str, resume_state: S | None) -> _Finite[X, S]:
        return _Finite(self.inner.build_part(step_id, for_part, resume_state), self.latch)


class _Stopping(StatefulSourcePartition[X, S]):
    def __init__(self, inner: StatefulSourcePartition[X, S], latch: RunLatch) -> None:
        self._inner = inner
        self._latch = latch

    def next_batch(self) -> Iterable[X]:
        if self._latch.should_stop():
            raise StopIteration
        return self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        # Wake at least every _POLL so a stop is noticed even when the inner source sleeps.
        soon = datetime.now(UTC) + _POLL
        inner = self._inner.next_awake()
        return soon if inner is None or inner > soon else inner

    def snapshot(self) -> S:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class StopWhen(FixedPartitionedSource[X, S], Generic[X, S]):
    """A live source that ends once ``latch`` says the run is over."""

    def __init__(self, inner: FixedPartitionedSource[X, S], latch: RunLatch) -> None:
        self.inner = inner
        self.latch = latch

    def list_parts(self) -> list[str]:
        return list(self.inner.list_parts())

    def build_part(self, step_id: str, for_part: str, resume_state: S | None) -> _Stopping[X, S]:
        return _Stopping(self.inner.build_part(step_id, for_part, resume_state), self.latch)


def bounded(inner: Any, latch: RunLatch, *, finite: bool) -> Any:
    """Wrap ``inner`` as a finite source that reports to ``latch`` or a live one it stops."""
    return CountedFinite(inner, latch) if finite else StopWhen(inner, latch)
