"""Market-data staleness: the pure decision.

The wall clock is read in one place only, at the edge (:class:`makerflow.sources.clock.WallClock`),
which emits :class:`Heartbeat` readings into the flow. Everything here is a function of the
readings and of event time, so a test (or a backtest's simulated clock) can feed heartbeats of
its choosing and get the same answer every time.

The age of a market's data at a heartbeat is ``now - ts`` of the newest market-data event seen
(the exchange's timestamp, so a feed that delivers old data is as stale as a silent one). A
market that has sent nothing yet is aged from the first heartbeat that found it silent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A reading of the wall clock, integer nanoseconds UTC, taken at the edge."""

    now: int


@dataclass(slots=True)
class StalenessMonitor:
    """Newest event time of one market's data, and the first silent heartbeat."""

    newest_ts: int | None = None
    silent_since: int | None = None

    def on_data(self, ts: int) -> None:
        if self.newest_ts is None or ts > self.newest_ts:
            self.newest_ts = ts

    def age_ns(self, hb: Heartbeat) -> int:
        """Nanoseconds since the newest data at ``hb`` (never negative: a clock behind the
        exchange's reads as fresh, not as "from the future")."""
        if self.newest_ts is None:
            if self.silent_since is None:
                self.silent_since = hb.now
            return max(hb.now - self.silent_since, 0)
        return max(hb.now - self.newest_ts, 0)

    def snapshot(self) -> tuple[int | None, int | None]:
        return self.newest_ts, self.silent_since


def is_stale(age_ns: int, max_age_ns: int | None) -> bool:
    """Whether data of age ``age_ns`` is too old; ``None`` disables the check."""
    return max_age_ns is not None and age_ns > max_age_ns
