"""Totals per account or globally (:class:`Portfolio`), and the index-oracle deviation of an
index basket (:func:`oracle_deviation_bps`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from makerflow.operators.risk_buckets import BPS
from makerflow.schemas.events import IndexPrice

# --- portfolio (account or global) ------------------------------------------------------------


@dataclass(frozen=True)
class MarketSummary:
    """A market's contribution to its account's and the global totals."""

    market: str
    account: str
    ts: int
    pnl: float
    open_notional: float


@dataclass(frozen=True)
class PortfolioMeasures:
    ts: int
    pnl: float
    drawdown: float
    open_notional: float

    def as_metrics(self) -> dict[str, float]:
        return {"pnl": self.pnl, "drawdown": self.drawdown, "open_notional": self.open_notional}


@dataclass(slots=True)
class Portfolio:
    """Sum of the latest summary of each market; drawdown from the total's high-water mark."""

    latest: dict[str, tuple[float, float]] = field(default_factory=dict)
    peak: float = 0.0

    def on_summary(self, s: MarketSummary) -> PortfolioMeasures:
        self.latest[s.market] = (s.pnl, s.open_notional)
        pnl = sum(p for p, _ in self.latest.values())
        self.peak = max(self.peak, pnl)
        return PortfolioMeasures(
            ts=s.ts,
            pnl=pnl,
            drawdown=self.peak - pnl,
            open_notional=sum(n for _, n in self.latest.values()),
        )

    def snapshot(self) -> tuple[tuple[tuple[str, tuple[float, float]], ...], float]:
        return tuple(self.latest.items()), self.peak


# --- index ------------------------------------------------------------------------------------


def oracle_deviation_bps(ip: IndexPrice) -> float | None:
    """Absolute deviation of the index from the oracle in bps, or None without both prices.
    Uses the index service's figure when it sent one."""
    if ip.oracle_deviation_bps is not None:
        return abs(ip.oracle_deviation_bps)
    if ip.price is None or ip.oracle_price is None or ip.oracle_price <= 0:
        return None
    return abs(ip.price / ip.oracle_price - 1.0) * BPS
