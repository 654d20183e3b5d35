"""Event-time windows of risk measures, and the statistics merged in them: pure logic, no I/O,
no clock.

Windows are aligned to the Unix epoch. A :class:`WindowSpec` of length ``L`` and slide ``S``
(``L`` a multiple of ``S``; tumbling when ``L == S``) keeps ``L / S`` buckets of ``S``
nanoseconds, bucket ``b`` covering ``[b*S, (b+1)*S)``. The window an event at ``ts`` is judged
in is the one that ends with the bucket holding ``ts``: ``[(b+1)*S - L, (b+1)*S)``. Measures are
updated on every event, so a breach is seen on the event that causes it, not when the window
closes; the same input gives the same measures whatever the wall clock says.

What is measured in them, and where: see :mod:`~makerflow.operators.risk_windows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

NS_PER_S = 1_000_000_000
BPS = 10_000.0


@dataclass(frozen=True)
class WindowSpec:
    """An epoch-aligned window: ``length_ns`` long, sliding by ``slide_ns``."""

    length_ns: int
    slide_ns: int

    def __post_init__(self) -> None:
        if self.slide_ns <= 0 or self.length_ns <= 0:
            raise ValueError(f"window length and slide must be positive, got {self}")
        if self.length_ns % self.slide_ns:
            raise ValueError(
                f"window length {self.length_ns} ns is not a multiple of the slide"
                f" {self.slide_ns} ns: pick a slide that divides the length"
            )

    @classmethod
    def tumbling(cls, length_ns: int) -> WindowSpec:
        return cls(length_ns, length_ns)

    @property
    def buckets(self) -> int:
        return self.length_ns // self.slide_ns

    def bucket_of(self, ts: int) -> int:
        return ts // self.slide_ns

    def window_of_bucket(self, bucket: int) -> tuple[int, int]:
        """``[start, end)`` of the window that ends with ``bucket``."""
        end = (bucket + 1) * self.slide_ns
        return end - self.length_ns, end

    def window_of(self, ts: int) -> tuple[int, int]:
        return self.window_of_bucket(self.bucket_of(ts))


A = TypeVar("A")


class BucketedWindow(Generic[A]):
    """The buckets of one sliding window, each an aggregate that merges in time order.

    ``merge(earlier, later)`` must be associative and the aggregates immutable (a read is
    handed out again until the next update). The merge of all closed buckets is cached,
    so reading the window costs one merge however many buckets it spans.
    """

    __slots__ = ("_buckets", "_empty", "_last", "_merge", "_newest", "_prefix", "spec")

    def __init__(
        self, spec: WindowSpec, empty: Callable[[], A], merge: Callable[[A, A], A]
    ) -> None:
        self.spec = spec
        self._empty = empty
        self._merge = merge
        self._buckets: dict[int, A] = {}
        self._newest: int | None = None
        self._prefix: A | None = None
        # The last value() read and the bucket it was read up to, until the next change: risk
        # reads every window on every update, and the order window changes seldom.
        self._last: tuple[int | None, A] | None = None

    @property
    def newest(self) -> int | None:
        return self._newest

    def update(self, ts: int, fn: Callable[[A], A]) -> bool:
        """Apply ``fn`` to the bucket of ``ts``. False when ``ts`` is older than the window
        (a late event that no open window can take)."""
        b = self.spec.bucket_of(ts)
        newest = self._newest
        if newest is not None and b <= newest - self.spec.buckets:
            return False
        self._last = None
        if newest is None or b > newest:
            self._newest = newest = b
            oldest = b - self.spec.buckets + 1
            for k in [k for k in self._buckets if k < oldest]:
                del self._buckets[k]
            self._prefix = None
        elif b < newest:
            self._prefix = None
        current = self._buckets.get(b)  # not get(b, empty()): that builds one every update
        self._buckets[b] = fn(self._empty() if current is None else current)
        return True

    def value(self, upto: int | None = None) -> A:
        """The merge of every bucket in the window that ends with bucket ``upto`` (default:
        the newest bucket seen)."""
        last = self._last
        if last is not None and last[0] == upto:
            return last[1]  # nothing changed since that read (the aggregates are frozen)
        value = self._value(upto)
        self._last = (upto, value)
        return value

    def _value(self, upto: int | None) -> A:
        newest = self._newest
        if newest is None:
            return self._empty()
        if upto is not None and upto != newest:
            acc = self._empty()
            for k in sorted(self._buckets):
                if upto - self.spec.buckets < k <= upto:
                    acc = self._merge(acc, self._buckets[k])
            return acc
        if self._prefix is None:
            acc = self._empty()
            for k in sorted(self._buckets):
                if k < newest:
                    acc = self._merge(acc, self._buckets[k])
            self._prefix = acc
        current = self._buckets.get(newest)
        return self._merge(self._prefix, self._empty() if current is None else current)

    def snapshot(self) -> tuple[int | None, tuple[tuple[int, A], ...]]:
        return self._newest, tuple(sorted(self._buckets.items()))

    def restore(self, snap: tuple[int | None, tuple[tuple[int, A], ...]]) -> None:
        self._newest, items = snap
        self._buckets = dict(items)
        self._prefix = None
        self._last = None


# --- price statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceStats:
    """Mid prices of a span of time: range, largest up and down move, sum of squared log
    returns. ``up`` is the largest rise ``p_j / p_i - 1`` with ``i`` before ``j``; ``down`` the
    largest fall ``1 - p_j / p_i``."""

    first: float = math.nan
    last: float = math.nan
    low: float = math.inf
    high: float = -math.inf
    up: float = 0.0
    down: float = 0.0
    sumsq: float = 0.0
    returns: int = 0

    def add(self, price: float, prev: float | None) -> PriceStats:
        sumsq, n = self.sumsq, self.returns
        if prev is not None and prev > 0:
            r = math.log(price / prev)
            sumsq += r * r
            n += 1
        if math.isnan(self.first):
            return PriceStats(price, price, price, price, 0.0, 0.0, sumsq, n)
        return PriceStats(
            self.first,
            price,
            min(self.low, price),
            max(self.high, price),
            max(self.up, price / self.low - 1.0),
            max(self.down, 1.0 - price / self.high),
            sumsq,
            n,
        )

    @staticmethod
    def merge(a: PriceStats, b: PriceStats) -> PriceStats:
        if math.isnan(a.first):
            return PriceStats(
                b.first,
                b.last,
                b.low,
                b.high,
                b.up,
                b.down,
                a.sumsq + b.sumsq,
                a.returns + b.returns,
            )
        if math.isnan(b.first):
            return PriceStats(
                a.first,
                a.last,
                a.low,
                a.high,
                a.up,
                a.down,
                a.sumsq + b.sumsq,
                a.returns + b.returns,
            )
        return PriceStats(
            a.first,
            b.last,
            min(a.low, b.low),
            max(a.high, b.high),
            max(a.up, b.up, b.high / a.low - 1.0),
            max(a.down, b.down, 1.0 - b.low / a.high),
            a.sumsq + b.sumsq,
            a.returns + b.returns,
        )

    @property
    def realized_vol_bps(self) -> float:
        """Realized volatility over the window (not annualized), in basis points."""
        return math.sqrt(self.sumsq) * BPS

    @property
    def largest_move_bps(self) -> float:
        return max(self.up, self.down) * BPS


# --- order statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderStats:
    """Counts of order lifecycle events in a span of time."""

    submitted: int = 0
    rejected: int = 0
    canceled: int = 0
    filled: int = 0

    @staticmethod
    def merge(a: OrderStats, b: OrderStats) -> OrderStats:
        return OrderStats(
            a.submitted + b.submitted,
            a.rejected + b.rejected,
            a.canceled + b.canceled,
            a.filled + b.filled,
        )

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.submitted if self.submitted else 0.0

    @property
    def cancel_rate(self) -> float:
        return self.canceled / self.submitted if self.submitted else 0.0
