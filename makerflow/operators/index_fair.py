"""A fair price per asset: venues' quotes (CEX mids from ticks, DEX pool prices) filtered for
staleness, validity and outliers, then their liquidity-weighted median (:class:`FairPrice`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from makerflow.operators.index_config import IndexConfig
from makerflow.schemas.events import DexPrice, IndexConstituent, OraclePrice, Tick, VenuePrice

NS = 1_000_000_000
MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation for normal data."""


@dataclass(frozen=True, slots=True)
class VenueQuote:
    """A venue's latest price of an asset, as the index keeps it."""

    asset: str
    venue: str
    kind: str
    """``cex`` or the DEX (``uniswap_v3``)."""
    price: float
    liquidity: float
    ts: int
    invalid: str = ""
    """Why the price cannot be used at all (a crossed book); empty when it can."""


@dataclass(frozen=True, slots=True)
class OracleQuote:
    asset: str
    feed: str
    price: float
    updated_at: int
    round_id: int


IndexInput: TypeAlias = Tick | DexPrice | OraclePrice


def split_symbol(symbol: str) -> tuple[str, str, bool]:
    """``BTC/USDT`` -> (``BTC``, ``USDT``, False); ``BTC/USDT:USDT`` -> (..., True)."""
    base, _, rest = symbol.partition("/")
    quote, colon, _settle = rest.partition(":")
    return base, quote, bool(colon)


def quote_of(event: Tick | DexPrice) -> VenueQuote:
    """A venue quote from a tick (CEX mid) or a DEX price."""
    if isinstance(event, DexPrice):
        return VenueQuote(
            asset=event.base,
            venue=f"{event.venue}:{event.pool}",
            kind=event.venue,
            price=event.price,
            liquidity=event.liquidity,
            ts=event.ts,
        )
    base, _, _ = split_symbol(event.symbol)
    invalid = ""
    if event.bid > 0 and event.ask > 0 and event.bid > event.ask:
        invalid = f"crossed book: bid {event.bid:.10g} > ask {event.ask:.10g}"
    # Average notional of the two sides at the touch: the depth a CEX offers near its mid.
    depth = (event.bid * event.bid_qty + event.ask * event.ask_qty) / 2.0
    return VenueQuote(
        asset=base,
        venue=event.venue,
        kind="cex",
        price=event.mid,
        liquidity=depth,
        ts=event.ts,
        invalid=invalid,
    )


def weighted_median(points: Sequence[tuple[float, float]]) -> float:
    """The weighted median of (value, weight) points; halfway between two values when the
    cumulative weight splits exactly between them (so equal weights give the usual median).
    Weights must be positive."""
    if not points:
        raise ValueError("the weighted median of nothing is undefined")
    ordered = sorted(points)
    total = sum(w for _, w in ordered)
    half = total / 2.0
    # Relative tolerance: shares summing to one half must count as exactly one half.
    tol = total * 1e-12
    cum = 0.0
    last = len(ordered) - 1
    for i, (value, weight) in enumerate(ordered):
        cum += weight
        if cum > half + tol:
            return value
        if cum >= half - tol and i < last:
            return (value + ordered[i + 1][0]) / 2.0
    return ordered[-1][0]


def cap_shares(weights: Sequence[float], max_share: float) -> list[float]:
    """Normalise ``weights`` to shares summing to 1, none above ``max_share`` (the excess is
    spread over the others in proportion). Infeasible caps (``n * max_share < 1``) give equal
    shares."""
    n = len(weights)
    total = math.fsum(weights)
    if n == 0:
        return []
    if total <= 0:
        return [1.0 / n] * n
    shares = [w / total for w in weights]
    if max_share >= 1.0 or max(shares) <= max_share:
        return shares
    if n * max_share <= 1.0:
        return [1.0 / n] * n
    capped = [False] * n
    while True:
        over = [i for i in range(n) if not capped[i] and shares[i] > max_share + 1e-15]
        if not over:
            return shares
        for i in over:
            capped[i] = True
            shares[i] = max_share
        free = [i for i in range(n) if not capped[i]]
        room = 1.0 - max_share * sum(capped)
        free_total = math.fsum(shares[i] for i in free)
        for i in free:
            shares[i] = room * shares[i] / free_total if free_total > 0 else room / len(free)


@dataclass(frozen=True, slots=True)
class AssetPrice:
    """One asset's fair price and how it was reached; ``valid_until`` is the event time at
    which a used venue turns stale and the price must be computed again."""

    constituent: IndexConstituent
    reason: str
    valid_until: int


class FairPrice:
    """Fair price of one asset from its venue quotes (pure; config only)."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self._cex_age = int(config.max_age_s * NS)
        self._dex_age = int(config.dex_max_age_s * NS)

    def max_age_ns(self, kind: str) -> int:
        return self._cex_age if kind == "cex" else self._dex_age

    def venue_multiplier(self, quote: VenueQuote) -> float:
        vw = self.config.venue_weights
        if quote.venue in vw:
            return vw[quote.venue]
        return vw.get(quote.kind, 1.0)

    def compute(
        self, asset: str, weight: float, quotes: Iterable[VenueQuote], now: int
    ) -> AssetPrice:
        cfg = self.config
        excluded: list[VenuePrice] = []
        fresh: list[tuple[VenueQuote, float]] = []
        for q in sorted(quotes, key=lambda q: q.venue):
            mult = self.venue_multiplier(q)
            raw_w = (q.liquidity if cfg.weighting == "liquidity" else 1.0) * mult
            reason = ""
            limit = self.max_age_ns(q.kind)
            if q.invalid:
                reason = q.invalid
            elif not (q.price > 0 and math.isfinite(q.price)):
                reason = f"invalid price {q.price!r}"
            elif mult <= 0:
                reason = "disabled in config (venue weight 0)"
            elif now - q.ts > limit:
                reason = f"stale: older than {limit / NS:g}s"
            elif cfg.weighting == "liquidity" and not raw_w > 0:
                reason = "no liquidity"
            if reason:
                excluded.append(
                    VenuePrice(venue=q.venue, price=q.price, weight=0.0, ts=q.ts, reason=reason)
                )
            else:
                fresh.append((q, raw_w))

        used: list[tuple[VenueQuote, float]] = []
        shares: list[float] = []
        if fresh:
            shares = cap_shares([w for _, w in fresh], cfg.max_venue_share)
            center = weighted_median(
                [(q.price, s) for (q, _), s in zip(fresh, shares, strict=True)]
            )
            limit_abs = self._outlier_limit(center, [q.price for q, _ in fresh])
            for q, w in fresh:
                dev = abs(q.price - center)
                if dev > limit_abs:
                    excluded.append(
                        VenuePrice(
                            venue=q.venue,
                            price=q.price,
                            weight=0.0,
                            ts=q.ts,
                            reason=(
                                f"outlier: {dev / center * 1e4:.1f} bps from median "
                                f"{center:.10g} (limit {limit_abs / center * 1e4:.1f} bps)"
                            ),
                        )
                    )
                else:
                    used.append((q, w))

        valid_until = min((q.ts + self.max_age_ns(q.kind) for q, _ in used), default=2**63 - 1)
        if len(used) < cfg.min_venues:
            reason = (
                f"{asset}: {len(used)} usable venue(s), need {cfg.min_venues}"
                f" ({len(excluded)} excluded)"
            )
            return AssetPrice(
                IndexConstituent(
                    asset=asset,
                    weight=weight,
                    price=None,
                    used=tuple(self._used(used)),
                    excluded=tuple(excluded),
                ),
                reason,
                valid_until,
            )
        used_prices = self._used(used, shares if len(used) == len(fresh) else None)
        price = weighted_median([(v.price, v.weight) for v in used_prices])
        return AssetPrice(
            IndexConstituent(
                asset=asset,
                weight=weight,
                price=price,
                used=tuple(used_prices),
                excluded=tuple(excluded),
            ),
            "",
            valid_until,
        )

    def _used(
        self, used: Sequence[tuple[VenueQuote, float]], shares: list[float] | None = None
    ) -> list[VenuePrice]:
        if shares is None:
            shares = cap_shares([w for _, w in used], self.config.max_venue_share)
        return [
            VenuePrice(venue=q.venue, price=q.price, weight=s, ts=q.ts)
            for (q, _), s in zip(used, shares, strict=True)
        ]

    def _outlier_limit(self, center: float, prices: Sequence[float]) -> float:
        """The largest absolute distance from the median that is not an outlier."""
        cfg = self.config
        if cfg.outlier_method == "band":
            return center * cfg.band_bps / 1e4
        deviations = sorted(abs(p - center) for p in prices)
        mad = weighted_median([(d, 1.0) for d in deviations])
        return max(cfg.mad_k * MAD_TO_SIGMA * mad, center * cfg.mad_floor_bps / 1e4)
