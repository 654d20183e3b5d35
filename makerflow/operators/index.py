"""The basket index: a fair price per asset from CEX and DEX venues, checked against an oracle.

Per asset, the index takes every venue's latest price (CEX mids from ticks, DEX pool prices),
drops what is stale in event time, invalid, or an outlier, and takes the liquidity-weighted
median of what is left; with fewer than ``min_venues`` left the asset has no price, and the
index says why. A basket is a sum of ``weight`` units of each asset (``1 BTC`` is the BTC
index; ``0.5 BTC + 10 ETH`` a basket), in the basket's quote currency.

The on-chain oracle (Chainlink) is a check, never an input: the same basket priced at the
oracles' answers is compared with the index, and a deviation over the threshold flags it.

Every :class:`IndexPrice` carries its constituents with the venues used (and their share of
the weight) and those excluded, each with its reason, so a trader can see why the number is
what it is.

:class:`BasketIndex` is the pure logic (no I/O, no clock: ``now`` is the latest event time the
basket has seen); :func:`index_op` is the Bytewax operator around it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.events import (
    DexPrice,
    IndexConstituent,
    IndexPrice,
    OraclePrice,
    Tick,
    VenuePrice,
)

NS = 1_000_000_000
MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation for normal data."""

# --- configuration ----------------------------------------------------------------------------


class BasketAsset(Config, frozen=True, kw_only=True):
    asset: str
    weight: float = 1.0
    """Units of the asset in one unit of the basket."""


class Basket(Config, frozen=True, kw_only=True):
    name: str
    quote: str
    """The currency the basket is priced in (``USDT``, ``USD``)."""
    assets: tuple[BasketAsset, ...]
    quote_aliases: tuple[str, ...] = ()
    """Venue quote currencies taken as the basket's quote (``USDT``, ``USDC`` for ``USD``)."""

    @property
    def quotes(self) -> frozenset[str]:
        return frozenset((self.quote, *self.quote_aliases))


def _default_baskets() -> tuple[Basket, ...]:
    # One basket per major, priced in USDT with USDC and USD venues taken as the same quote.
    return tuple(
        Basket(
            name=asset,
            quote="USDT",
            quote_aliases=("USDC", "USD"),
            assets=(BasketAsset(asset=asset, weight=1.0),),
        )
        for asset in ("BTC", "ETH")
    )


class IndexConfig(Config, frozen=True, kw_only=True):
    baskets: tuple[Basket, ...] = msgspec.field(default_factory=_default_baskets)
    min_venues: int = 2
    """Fewer fresh, sane venues than this and the asset (so the basket) has no price."""
    max_age_s: float = 10.0
    """A CEX price older than this, in event time, is stale."""
    dex_max_age_s: float = 60.0
    """A DEX price older than this is stale (a block comes every 12 s on mainnet)."""
    outlier_method: Literal["mad", "band"] = "mad"
    mad_k: float = 5.0
    """``mad``: a venue further than ``mad_k`` robust sigmas from the median is an outlier..."""
    mad_floor_bps: float = 10.0
    """...but never one within this many bps of it (a tight cluster has a tiny MAD)."""
    band_bps: float = 100.0
    """``band``: a venue further than this from the median is an outlier."""
    weighting: Literal["liquidity", "equal"] = "liquidity"
    """``liquidity``: a CEX weighs its top-of-book notional, a DEX pool the notional that
    moves it 10 bps (see the web3 source's ``depth_bps``)."""
    max_venue_share: float = 0.5
    """No venue carries more than this share of an asset's weight (when enough venues make
    that possible), so one deep venue cannot be the median on its own."""
    venue_weights: dict[str, float] = {}
    """Multipliers by venue (``binance``) or venue kind (``uniswap_v3``); 0 disables one."""
    include_derivatives: bool = False
    """Take ticks of derivative markets (``BTC/USDT:USDT``) too; basis makes them biased."""
    oracle_threshold_bps: float = 100.0
    """|index - oracle| over this flags the index."""
    oracle_max_age_s: float = 3600.0
    """An oracle round older than this (Chainlink's heartbeat) cannot check the index."""


def load_index_config(path: str | Path | None) -> IndexConfig:
    """The ``[index]`` table of a TOML file (or the whole file); defaults (BTC and ETH
    baskets in USDT) when ``path`` is None."""
    return load_section(path, "index", IndexConfig)


# --- pure logic -------------------------------------------------------------------------------


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


# --- routing and the Bytewax operator ---------------------------------------------------------


class BasketRouter:
    """Which baskets an event concerns: those holding its asset in an accepted quote."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        routes: dict[tuple[str, str], list[str]] = {}
        for b in config.baskets:
            for a in b.assets:
                for q in b.quotes:
                    routes.setdefault((a.asset, q), []).append(b.name)
        self._routes = {k: tuple(v) for k, v in routes.items()}

    def baskets_for(self, event: IndexInput) -> tuple[str, ...]:
        if isinstance(event, Tick):
            base, quote, derivative = split_symbol(event.symbol)
            if derivative and not self.config.include_derivatives:
                return ()
        else:
            base, quote = event.base, event.quote
        return self._routes.get((base, quote), ())


IndexState: TypeAlias = tuple[str, IndexSnapshot]
"""A basket's resume state: its name and its snapshot."""


class _IndexLogic(StatefulLogic[tuple[str, IndexInput], IndexPrice, IndexState]):
    """A basket's state in the dataflow. Values carry the basket's name because the builder
    only gets the resume state, and a basket's logic is built on its first event."""

    def __init__(self, step_id: str, config: IndexConfig, resume: IndexState | None) -> None:
        self.step_id = step_id
        self.config = config
        self.index: BasketIndex | None = None
        if resume is not None:
            self._start(resume[0], resume[1])
        self._out = metrics.EVENTS_OUT.labels(step=step_id)

    def _start(self, name: str, snapshot: IndexSnapshot | None) -> BasketIndex:
        basket = next(b for b in self.config.baskets if b.name == name)
        self.index = BasketIndex(basket, self.config, snapshot)
        self._deviation = metrics.INDEX_ORACLE_DEVIATION.labels(basket=name)
        return self.index

    def on_item(self, value: tuple[str, IndexInput]) -> tuple[Iterable[IndexPrice], bool]:
        name, event = value
        index = self.index or self._start(name, None)
        out = index.update(event)
        if out is None:
            return ((), StatefulLogic.RETAIN)
        self._out.inc()
        if out.oracle_deviation_bps is not None:
            self._deviation.set(out.oracle_deviation_bps)
        return ((out,), StatefulLogic.RETAIN)

    def snapshot(self) -> IndexState:
        assert self.index is not None  # a key exists only once an event has arrived
        return (self.index.basket.name, self.index.snapshot())


@operator
def index_op(
    step_id: str,
    ticks: Stream[Tick],
    dex: Stream[DexPrice | OraclePrice],
    config: IndexConfig,
) -> Stream[IndexPrice]:
    """Basket index prices from CEX ticks and DEX prices, checked against oracle answers.

    Each event goes to every basket holding its asset (in an accepted quote); the state is
    keyed by basket, so baskets spread across workers. One :class:`IndexPrice` per event
    that changes a basket; events no basket holds are not for the index and pass by.
    """
    router = BasketRouter(config)
    counted_in = metrics.EVENTS_IN.labels(step=step_id)

    def route(event: IndexInput) -> list[tuple[str, tuple[str, IndexInput]]]:
        counted_in.inc()
        return [(name, (name, event)) for name in router.baskets_for(event)]

    merged: Stream[IndexInput] = op.merge("merge", ticks, dex)
    keyed = op.flat_map("route", merged, route)
    priced = op.stateful("index", keyed, lambda resume: _IndexLogic(step_id, config, resume))
    return op.key_rm("unkey", priced)
