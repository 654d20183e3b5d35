"""One basket's index (:class:`BasketIndex`): the pure logic that prices a basket from its
assets' fair prices and checks it against the oracles."""

from __future__ import annotations

import math
from typing import TypeAlias

from makerflow.operators.index_config import Basket, IndexConfig
from makerflow.operators.index_fair import (
    NS,
    AssetPrice,
    FairPrice,
    IndexInput,
    OracleQuote,
    VenueQuote,
    quote_of,
    split_symbol,
)
from makerflow.schemas.events import IndexPrice, OraclePrice, Tick

IndexSnapshot: TypeAlias = tuple[int, tuple[VenueQuote, ...], tuple[OracleQuote, ...]]
"""(now, venue quotes, oracle quotes): everything a basket needs to resume."""


class BasketIndex:
    """One basket's index: keeps each venue's latest quote and each asset's latest oracle
    answer, and prices the basket on every update. Pure: ``now`` is the latest event time
    seen."""

    def __init__(
        self, basket: Basket, config: IndexConfig, snapshot: IndexSnapshot | None = None
    ) -> None:
        self.basket = basket
        self.config = config
        self.fair = FairPrice(config)
        self._weights = {a.asset: a.weight for a in basket.assets}
        self._quotes: dict[str, dict[str, VenueQuote]] = {a: {} for a in self._weights}
        self._oracles: dict[str, OracleQuote] = {}
        self._cache: dict[str, AssetPrice] = {}
        self.now = 0
        if snapshot is not None:
            self.now, quotes, oracles = snapshot
            for q in quotes:
                self._quotes[q.asset][q.venue] = q
            for o in oracles:
                self._oracles[o.asset] = o

    def snapshot(self) -> IndexSnapshot:
        quotes = tuple(q for venues in self._quotes.values() for q in venues.values())
        return (self.now, quotes, tuple(self._oracles.values()))

    def accepts(self, asset: str, quote: str) -> bool:
        return asset in self._weights and quote in self.basket.quotes

    def update(self, event: IndexInput) -> IndexPrice | None:
        """Take one event; the basket's new price, or None when the event changes nothing
        (an older price than the venue's latest, or an asset or quote not in the basket)."""
        if isinstance(event, OraclePrice):
            if not self.accepts(event.base, event.quote):
                return None
            prev = self._oracles.get(event.base)
            if prev is not None and (event.updated_at, event.round_id) < (
                prev.updated_at,
                prev.round_id,
            ):
                return None
            self._oracles[event.base] = OracleQuote(
                event.base, event.feed, event.price, event.updated_at, event.round_id
            )
        else:
            if isinstance(event, Tick):
                _, quote, derivative = split_symbol(event.symbol)
                if derivative and not self.config.include_derivatives:
                    return None
            else:
                quote = event.quote
            q = quote_of(event)
            if not self.accepts(q.asset, quote):
                return None
            venues = self._quotes[q.asset]
            prev_q = venues.get(q.venue)
            if prev_q is not None and q.ts < prev_q.ts:
                return None
            venues[q.venue] = q
            self._cache.pop(q.asset, None)
        self.now = max(self.now, event.ts)
        return self.price()

    def _asset(self, asset: str) -> AssetPrice:
        cached = self._cache.get(asset)
        if cached is not None and self.now < cached.valid_until:
            return cached
        computed = self.fair.compute(
            asset, self._weights[asset], self._quotes[asset].values(), self.now
        )
        self._cache[asset] = computed
        return computed

    def price(self) -> IndexPrice:
        """The basket's price at ``now`` from what the index holds."""
        assets = [self._asset(a.asset) for a in self.basket.assets]
        constituents = tuple(a.constituent for a in assets)
        reasons = [a.reason for a in assets if a.reason]
        price: float | None = None
        if not reasons:
            price = math.fsum(c.weight * c.price for c in constituents if c.price is not None)
        oracle_price, deviation, flagged, note = self._oracle_check(price)
        if note:
            reasons.append(note)
        return IndexPrice(
            ts=self.now,
            basket=self.basket.name,
            quote=self.basket.quote,
            price=price,
            constituents=constituents,
            oracle_price=oracle_price,
            oracle_deviation_bps=deviation,
            flagged=flagged,
            reason="; ".join(reasons),
        )

    def _oracle_check(self, price: float | None) -> tuple[float | None, float | None, bool, str]:
        if not self._oracles:
            return None, None, False, ""
        limit = int(self.config.oracle_max_age_s * NS)
        total = 0.0
        for a in self.basket.assets:
            o = self._oracles.get(a.asset)
            if o is None:
                return None, None, False, f"oracle check skipped: no oracle answer for {a.asset}"
            if self.now - o.updated_at > limit:
                age = (self.now - o.updated_at) / NS
                return (
                    None,
                    None,
                    False,
                    f"oracle check skipped: {a.asset} oracle round {o.round_id} is {age:.0f}s old"
                    f" (limit {self.config.oracle_max_age_s:g}s)",
                )
            total += a.weight * o.price
        if price is None or total <= 0:
            return total, None, False, ""
        deviation = abs(price - total) / total * 1e4
        if deviation > self.config.oracle_threshold_bps:
            return (
                total,
                deviation,
                True,
                f"index deviates {deviation:.1f} bps from the oracle "
                f"(limit {self.config.oracle_threshold_bps:g} bps)",
            )
        return total, deviation, False, ""
