"""The wall-clock edge: a source of :class:`Heartbeat` readings.

This is the one place a flow reads the wall clock (for liveness: market-data staleness).
The clock is injected, so tests and simulations pass their own; production uses UTC now.
One partition, so a cluster emits one heartbeat per interval, not one per worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from makerflow.operators.staleness import Heartbeat

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_ns(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


class _ClockPartition(StatefulSourcePartition[Heartbeat, None]):
    def __init__(self, interval: timedelta, clock: Clock, limit: int | None) -> None:
        self._interval = interval
        self._clock = clock
        self._last = clock()
        self._next = self._last
        self._left = limit

    def next_batch(self) -> list[Heartbeat]:
        if self._left is not None and self._left <= 0:
            raise StopIteration
        now = self._last = self._clock()
        if now < self._next:
            return []
        self._next = now + self._interval
        if self._left is not None:
            self._left -= 1
        return [Heartbeat(to_ns(now))]

    def next_awake(self) -> datetime | None:
        # Bytewax sleeps until a time on the real clock, so the wait left on the injected
        # clock is laid onto the real one: the source never blocks and never busy-polls.
        return utc_now() + max(self._next - self._last, timedelta(0))

    def snapshot(self) -> None:
        return None


class WallClock(FixedPartitionedSource[Heartbeat, None]):
    """Emits ``Heartbeat(now)`` every ``interval`` (``limit`` of them, or forever)."""

    def __init__(
        self, interval: timedelta, clock: Clock = utc_now, limit: int | None = None
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        self.interval = interval
        self.clock = clock
        self.limit = limit

    def list_parts(self) -> list[str]:
        return ["clock"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ClockPartition:
        return _ClockPartition(self.interval, self.clock, self.limit)
