"""Order-arrival intensity ``lambda(delta) = A exp(-kappa delta)`` estimated from trades.

Pure: no I/O, no clock; the time is the event time of the trades fed in.

A quote resting at distance ``delta`` from the mid is reached by every aggressive trade that
prints at least ``delta`` away from the mid on its side. So for each trade the distance
``d = |price - mid|`` (the mid of the book the trade met) is put into a histogram of bins of
width ``step``, kept per time slice of ``slice_s`` over a rolling window of ``window_s``
(event time, slices aligned to the Unix epoch). The arrival rate that reaches ``delta_k =
k step`` is the number of trades with ``d >= delta_k`` over the covered time, halved since
bids and asks are pooled (the models take ``A`` per side). ``ln lambda`` is linear in
``delta``, so ``A`` and ``kappa`` come from a least-squares line through the points
``(delta_k, ln lambda_k)`` weighted by their counts (the variance of the log of a Poisson
count ``n`` is about ``1/n``): closed form, no optimiser, a few hundred operations.

Hummingbot's ``TradingIntensityIndicator`` does the same fit with scipy's ``curve_fit`` on
the volume at each exact distance; counting the trades that reach *at least* each distance is
what ``lambda(delta)`` means in the Avellaneda-Stoikov and Gueant-Lehalle-Fernandez-Tapia
models, and the log-linear fit needs no starting point.

Bounds and fallback: until ``min_trades`` trades over ``min_points`` populated bins have been
seen, or when the fitted slope is not negative, the fit is not used (``estimate`` gives
None and the caller keeps its configured ``A`` and ``kappa``); a fitted ``kappa`` is kept
within ``[kappa_min, kappa_max]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Intensity:
    """Arrival intensity per side: ``A`` (1/s at the mid) and ``kappa`` (1/price)."""

    a: float
    kappa: float


IntensityState = tuple[
    tuple[tuple[int, tuple[int, ...]], ...],
    int | None,
    int | None,
    tuple[float, float] | None,
    int | None,
]
"""What :meth:`TradeIntensity.state` gives and :meth:`TradeIntensity.load` takes."""


class TradeIntensity:
    """Rolling estimate of :class:`Intensity` from trades' distances to the mid."""

    __slots__ = (
        "_cached",
        "_cached_at",
        "_slice_ns",
        "bins",
        "first_ts",
        "kappa_max",
        "kappa_min",
        "last_ts",
        "min_points",
        "min_trades",
        "refit_ns",
        "slices",
        "step",
        "window_slices",
    )

    def __init__(
        self,
        step: float,
        *,
        bins: int = 40,
        window_s: float = 300.0,
        slice_s: float = 10.0,
        min_trades: int = 200,
        min_points: int = 4,
        kappa_min: float = 1e-6,
        kappa_max: float = 1e6,
        refit_s: float = 5.0,
    ) -> None:
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"intensity step must be > 0, got {step!r}")
        if bins < 3:
            raise ValueError(f"intensity bins must be >= 3, got {bins}")
        if not (slice_s > 0 and window_s >= slice_s):
            raise ValueError(f"need 0 < slice_s <= window_s, got {slice_s!r}, {window_s!r}")
        if not 0 < kappa_min < kappa_max:
            raise ValueError(f"need 0 < kappa_min < kappa_max, got {kappa_min}, {kappa_max}")
        self.step = step
        self.bins = bins
        self._slice_ns = round(slice_s * NS)
        self.window_slices = max(1, round(window_s / slice_s))
        self.min_trades = min_trades
        self.min_points = max(2, min_points)
        self.kappa_min = kappa_min
        self.kappa_max = kappa_max
        self.refit_ns = round(refit_s * NS)
        self.slices: dict[int, list[int]] = {}
        """Slice index -> counts per distance bin (the last bin holds everything beyond)."""
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self._cached: Intensity | None = None
        self._cached_at: int | None = None

    def add(self, ts: int, distance: float) -> None:
        """One trade printed ``distance`` (>= 0, price units) from the mid at ``ts``."""
        if not (distance >= 0 and math.isfinite(distance)):
            return
        last = self.last_ts
        if last is not None and ts < last - self._slice_ns * self.window_slices:
            return  # older than the window
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts  # the earliest trade, whatever order they arrive in
        if last is None or ts > last:
            self.last_ts = ts
        idx = ts // self._slice_ns
        counts = self.slices.get(idx)
        if counts is None:
            counts = self.slices[idx] = [0] * (self.bins + 1)
            self._expire()
        k = int(distance / self.step)
        counts[k if k < self.bins else self.bins] += 1

    def _expire(self) -> None:
        assert self.last_ts is not None
        oldest = self.last_ts // self._slice_ns - self.window_slices + 1
        for idx in [i for i in self.slices if i < oldest]:
            del self.slices[idx]

    def covered_s(self) -> float:
        """Event time the window covers."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        start = max(
            self.first_ts,
            (self.last_ts // self._slice_ns - self.window_slices + 1) * self._slice_ns,
        )
        return (self.last_ts - start) / NS

    def estimate(self, ts: int) -> Intensity | None:
        """The fit at ``ts`` (refitted at most every ``refit_s`` of event time)."""
        at = self._cached_at
        if at is not None and 0 <= ts - at < self.refit_ns:
            return self._cached
        self._cached_at = ts
        self._cached = self.fit()
        return self._cached

    def fit(self) -> Intensity | None:
        """A and kappa from the trades in the window, or None when they do not say."""
        span = self.covered_s()
        if span <= 0 or not self.slices:
            return None
        totals = [0] * (self.bins + 1)
        for counts in self.slices.values():
            for k, n in enumerate(counts):
                totals[k] += n
        if sum(totals) < self.min_trades:
            return None
        # counts reaching at least bin k's lower edge, k = 1..bins (k = 0 is every trade)
        sw = sx = sy = sxx = sxy = 0.0
        points = 0
        reach = 0
        for k in range(self.bins, 0, -1):
            reach += totals[k]
            if reach < 5:
                continue  # too few to say anything about the log
            x = k * self.step
            y = math.log(reach / (2.0 * span))
            w = float(reach)
            sw += w
            sx += w * x
            sy += w * y
            sxx += w * x * x
            sxy += w * x * y
            points += 1
        if points < self.min_points:
            return None
        var = sxx - sx * sx / sw
        if var <= 0:
            return None
        slope = (sxy - sx * sy / sw) / var
        if not slope < 0:
            return None
        kappa = min(max(-slope, self.kappa_min), self.kappa_max)
        # intercept of the line of the clamped slope through the weighted centroid
        log_a = (sy + kappa * sx) / sw
        return Intensity(a=math.exp(log_a), kappa=kappa)

    def state(self) -> IntensityState:
        """Everything needed to resume (for snapshots), the last fit included, so a resumed
        estimator refits when the original would have."""
        cached = self._cached
        return (
            tuple((i, tuple(c)) for i, c in sorted(self.slices.items())),
            self.first_ts,
            self.last_ts,
            None if cached is None else (cached.a, cached.kappa),
            self._cached_at,
        )

    def invalidate(self) -> None:
        """Refit at the next :meth:`estimate` (after a change of the fit's parameters)."""
        self._cached = self._cached_at = None

    def load(self, state: IntensityState) -> None:
        slices, self.first_ts, self.last_ts, cached, self._cached_at = state
        self.slices = {i: list(c) for i, c in slices if len(c) == self.bins + 1}
        self._cached = None if cached is None else Intensity(a=cached[0], kappa=cached[1])
