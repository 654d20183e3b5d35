"""OHLCV bars in event-time tumbling windows aligned to the Unix epoch (pure logic).

A window of length L holds the trades with ``start <= ts < start + L`` where
``start = ts - ts % L``: the same trade falls in the same bar in every run, on every worker.
A window closes when the market's event time (any event, not only trades) passes its end plus
a grace period, so a trade that arrives a little after a book update of a later time still
counts. A trade for a window already closed is late: it is refused and counted, never folded
into a later bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from makerflow.schemas.events import Bar, Trade


@dataclass(slots=True)
class _Acc:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    trades: int
    last_ts: int

    def add(self, price: float, qty: float, ts: int) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        # Close is the trade latest in event time (ties: arrival order).
        if ts >= self.last_ts:
            self.close = price
            self.last_ts = ts
        self.volume += qty
        self.notional += price * qty
        self.trades += 1

    def as_tuple(self) -> tuple[int, float, float, float, float, float, float, int, int]:
        return (
            self.start,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.notional,
            self.trades,
            self.last_ts,
        )


_NEVER = 2**63
_NONE: list[Bar] = []
"""Returned (never mutated) when nothing closed, to spare a list per trade."""
_KEPT: tuple[list[Bar], bool] = (_NONE, True)
"""What :meth:`BarBuilder.add` returns for most trades: accepted, nothing closed."""


class BarBuilder:
    """Bars of one length for one market."""

    def __init__(self, venue: str, symbol: str, length_ns: int, grace_ns: int = 0) -> None:
        if length_ns <= 0:
            raise ValueError(f"bar length must be > 0 ns, got {length_ns}")
        if grace_ns < 0:
            raise ValueError(f"bar grace must be >= 0 ns, got {grace_ns}")
        self.venue = venue
        self.symbol = symbol
        self.length = length_ns
        self.grace = grace_ns
        self.open_windows: dict[int, _Acc] = {}
        self.closed_until = -(2**62)
        """Every window ending at or before this time has been emitted."""
        self.late = 0
        self.due = _NEVER
        """Earliest event time at which an open window closes (``2**63`` when none is open):
        callers compare it with an event time without a call per trade (read it, never set
        it; :meth:`next_due` is the same as an optional)."""

    def window_start(self, ts: int) -> int:
        return ts - ts % self.length

    def add(self, trade: Trade) -> tuple[list[Bar], bool]:
        """Fold a trade in; returns bars closed by its time and whether it was accepted."""
        ts = trade.ts
        start = ts - ts % self.length
        acc = self.open_windows.get(start)
        if acc is not None:
            # The common case: another trade in an open window.
            acc.add(trade.price, trade.qty, ts)
            return (self.advance(ts), True) if ts >= self.due else _KEPT
        if start + self.length <= self.closed_until:
            self.late += 1
            return self.advance(ts), False
        p = trade.price
        acc = _Acc(start, p, p, p, p, 0.0, 0.0, 0, ts)
        self.open_windows[start] = acc
        self.due = min(self.due, start + self.length + self.grace)
        acc.add(p, trade.qty, ts)
        return self.advance(ts), True

    def advance(self, ts: int) -> list[Bar]:
        """Close the windows that end at or before ``ts - grace``."""
        watermark = ts - self.grace
        if watermark <= self.closed_until:
            return _NONE
        self.closed_until = watermark
        if not self.open_windows:
            return _NONE
        done = sorted(s for s in self.open_windows if s + self.length <= watermark)
        bars = [self._bar(self.open_windows.pop(s)) for s in done]
        self.due = self._earliest_due()
        return bars

    def _earliest_due(self) -> int:
        if not self.open_windows:
            return _NEVER
        return min(self.open_windows) + self.length + self.grace

    def next_due(self) -> int | None:
        """The event time at which the earliest open window closes, if any is open."""
        return None if self.due == _NEVER else self.due

    def flush(self) -> list[Bar]:
        """Close every open window (end of input)."""
        done = sorted(self.open_windows)
        bars = [self._bar(self.open_windows.pop(s)) for s in done]
        self.due = _NEVER
        if done:
            self.closed_until = max(self.closed_until, done[-1] + self.length)
        return bars

    def _bar(self, acc: _Acc) -> Bar:
        return Bar(
            ts=acc.start + self.length,
            venue=self.venue,
            symbol=self.symbol,
            start_ts=acc.start,
            end_ts=acc.start + self.length,
            open=acc.open,
            high=acc.high,
            low=acc.low,
            close=acc.close,
            volume=acc.volume,
            notional=acc.notional,
            trades=acc.trades,
        )

    def state(self) -> tuple[object, ...]:
        return (
            self.closed_until,
            self.late,
            tuple(a.as_tuple() for a in self.open_windows.values()),
        )

    def restore(self, state: Any) -> None:
        closed_until, late, windows = state
        self.closed_until = int(closed_until)
        self.late = int(late)
        self.open_windows = {w[0]: _Acc(*w) for w in windows}
        self.due = self._earliest_due()
