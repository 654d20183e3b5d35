"""Settings of balance reconciliation, and the epoch-aligned windows it cuts time into."""

from __future__ import annotations

import math

import msgspec

from makerflow.schemas.config import Config

NS = 1_000_000_000
DEFAULT_PRECISION: dict[str, float] = {
    a: 1e-8 for a in ("BTC", "ETH", "SOL", "BNB", "USDT", "USDC", "USD")
}
"""Common assets at 8 decimals, how most spot venues book balances."""


class ReconConfig(Config, frozen=True, kw_only=True):
    """Reconciliation settings. Times are seconds of event time unless said otherwise."""

    window_s: float = 60.0
    """Length of the tumbling windows, aligned to the Unix epoch."""
    grace_s: float = 5.0
    """How far the watermark (the latest balance snapshot) must pass a window's end before its
    first report: absorbs balances arriving ahead of the fills and transfers."""
    allowed_lateness_s: float = 600.0
    """How long after its first report a window still takes late events (and amends)."""
    abs_tolerance: float = 0.0
    """Smallest difference that is a break, in units of the asset (never below precision)."""
    rel_tolerance: float = 1e-9
    """Difference relative to the larger of expected and reported that is still OK."""
    assets: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_PRECISION))
    """Known assets and their precision (the smallest unit the exchange books)."""
    default_precision: float | None = None
    """Precision of assets not in ``assets``; ``None`` makes them unknown (dead letters)."""
    idle_close_s: float | None = None
    """Wall-clock seconds after which a quiet key's windows close as if event time had moved
    on with the wall clock (live only; ``None`` keeps the flow purely event-time driven)."""
    open_order_grace_s: float = 5.0
    """Orders younger than this are not flagged by open-order reconciliation (in flight)."""
    own_order_prefix: str | None = "mf-"
    """Client order ids this system gives its orders (the quoter's ``mf-``): an exchange order
    without it is an orphan at once. ``None`` judges by our order events alone."""
    open_order_max_view_lag_s: float = 300.0
    """Missing orders are judged only while our order events are at most this far behind the
    exchange's listing (a restart reading its backlog is not judged)."""
    step: str = "reconcile"
    """Step name written into dead letters."""

    @property
    def window_ns(self) -> int:
        return round(self.window_s * NS)

    @property
    def grace_ns(self) -> int:
        return round(self.grace_s * NS)

    @property
    def lateness_ns(self) -> int:
        return round(self.allowed_lateness_s * NS)

    def precision(self, asset: str) -> float | None:
        """The asset's precision, or ``None`` if the asset is unknown."""
        p = self.assets.get(asset)
        return self.default_precision if p is None else p

    def validate(self) -> ReconConfig:
        """``self`` if usable, else a ValueError saying which setting to fix."""
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.grace_s < 0 or self.allowed_lateness_s < 0:
            raise ValueError("grace_s and allowed_lateness_s must be >= 0")
        if self.abs_tolerance < 0 or self.rel_tolerance < 0:
            raise ValueError("abs_tolerance and rel_tolerance must be >= 0")
        bad = {a: p for a, p in self.assets.items() if not (p > 0 and math.isfinite(p))}
        if bad:
            raise ValueError(f"asset precisions must be finite and > 0: {bad}")
        return self


def window_start(ts: int, length_ns: int) -> int:
    """Start of the epoch-aligned window of ``length_ns`` holding ``ts``."""
    return ts - ts % length_ns
