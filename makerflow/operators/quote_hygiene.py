"""When a resting quote stays and when it is replaced: the quoter's rules against stale quotes.

Pure. An order on a ladder slot is kept while it is within the refresh tolerance of the
price and size the model now wants, and younger than the ceiling on quote age. The tolerance
is a fraction of the half spread actually quoted (``refresh_fraction``, at most 1), optionally
capped in bps of the reference: a requote follows any move of the mid bigger than that part
of the spread, so a quote never lags the market by more than its own edge.

The minimum lifetime keeps a young order that is off its price, so that a jittering mid does
not churn orders, unless the market has run into it: on the wrong side of the mid, or more
than a half spread more aggressive than the model wants (it would be picked off). One left
behind (too passive) waits for its lifetime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from makerflow.operators.quoting_config import QuotingParams
from makerflow.schemas.events import Side

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Hygiene:
    """The rules at one moment: built once per requote, asked once per live order."""

    tolerance: float
    half_spread: float
    mid: float
    lifetime_ns: int
    max_age_ns: int
    """0: no ceiling."""
    lot: float

    @classmethod
    def of(
        cls,
        params: QuotingParams,
        *,
        half_spread: float,
        reference: float,
        mid: float,
        tick_size: float,
        lot_size: float,
    ) -> Hygiene:
        tolerance = params.refresh_fraction * half_spread
        if params.refresh_tolerance_bps > 0:
            tolerance = min(tolerance, reference * params.refresh_tolerance_bps / 1e4)
        return cls(
            tolerance=tolerance + tick_size * 1e-6,  # float noise of prices on the grid
            half_spread=half_spread,
            mid=mid,
            lifetime_ns=round(params.min_quote_lifetime_s * NS),
            max_age_ns=round(params.max_quote_age_s * NS),
            lot=lot_size,
        )

    def keeps(
        self,
        side: Side,
        price: float,
        qty: float,
        placed_ts: int,
        want_price: float,
        want_qty: float,
        ts: int,
    ) -> bool:
        """Whether the order resting at ``price`` for ``qty`` since ``placed_ts`` stays,
        against the desired ``want_price`` / ``want_qty`` at ``ts``."""
        age = ts - placed_ts
        close = abs(price - want_price) <= self.tolerance and abs(qty - want_qty) < self.lot / 2
        if close:
            return not (self.max_age_ns and age >= self.max_age_ns)
        if age >= self.lifetime_ns:
            return False
        if side == "buy":
            exposed = price >= self.mid or price - want_price > self.half_spread
        else:
            exposed = price <= self.mid or want_price - price > self.half_spread
        return not exposed

    def kept_until(
        self, price: float, qty: float, placed_ts: int, want_price: float, want_qty: float
    ) -> float:
        """For an order :meth:`keeps` keeps at some ``ts``: the first time it may stop
        keeping it (it keeps it at every earlier time, the other inputs equal). Close to its
        price it stays until the age ceiling; off its price (and not exposed, or it would not
        be kept) until its minimum lifetime ends."""
        close = abs(price - want_price) <= self.tolerance and abs(qty - want_qty) < self.lot / 2
        if close:
            return placed_ts + self.max_age_ns if self.max_age_ns else math.inf
        return placed_ts + self.lifetime_ns
