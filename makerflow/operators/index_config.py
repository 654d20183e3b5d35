"""Settings of the basket index: the baskets, their assets and quotes, and the rules for
venues (staleness, outliers, liquidity) and the oracle check."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from makerflow.schemas.config import Config, load_section


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
