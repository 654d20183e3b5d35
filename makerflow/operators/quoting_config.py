"""Configuration of the quoter: which markets it quotes, and the model and ladder parameters.

A file (``MAKERFLOW_CONFIG``, TOML) looks like::

    id_namespace = "paper-1"

    [defaults]            # QuotingParams shared by every market
    model = "avellaneda_stoikov"
    gamma = 0.005
    kappa = 0.3

    [[markets]]
    venue = "binance"
    symbol = "BTC/USDT"
    tick_size = 0.01
    lot_size = 0.00001
    min_notional = 5.0
    index_basket = "BTC"
    [markets.params]      # per-market overrides of [defaults]
    order_size = 0.001
    levels = 3

The same table may also sit under ``[quoting]`` in a file shared by several services.

Units. Prices are in the market's quote currency, time in seconds of event time, and the
volatility ``sigma`` is the absolute standard deviation of the mid price per square root of a
second (what :class:`~makerflow.operators.quoting_models.EwmaVolatility` estimates). The
Avellaneda-Stoikov ``gamma`` and ``kappa`` are in 1/price. Inventory enters the model in
units of ``inventory_unit`` (by default the level-0 order size), as the paper counts
inventory in orders: one filled order moves the reservation price by ``gamma sigma^2 tau``.
The defaults suit a BTC/USDT-like market (sigma about 4 USDT per sqrt(s)); set ``gamma``,
``kappa`` and sizes per market for anything else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import msgspec

from makerflow.operators.ladder import from_ccxt_market
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.events import market_key
from makerflow.schemas.scopes import symbol_assets

ModelKind = Literal["avellaneda_stoikov", "fixed_spread"]
FairPrice = Literal["mid", "microprice", "index"]

ParamValue = float | int | str | bool


class QuotingParams(Config, frozen=True, kw_only=True):
    """Model, ladder and order-management parameters of one market.

    Every field can be changed at run time by a ``set_params`` control command.
    """

    # --- model
    model: ModelKind = "avellaneda_stoikov"
    gamma: float = 0.005
    """A-S risk aversion (1/price)."""
    kappa: float = 0.3
    """A-S order-book liquidity: fill intensity decays as exp(-kappa * distance) (1/price)."""
    horizon_s: float = 60.0
    """A-S horizon T in seconds."""
    rolling_horizon: bool = True
    """True: the time left is always ``horizon_s`` (a rolling horizon, the stationary form).
    False: trading sessions of ``horizon_s`` aligned to the Unix epoch; the time left runs
    down to zero at each session end, then restarts."""
    half_spread_bps: float = 5.0
    """Fixed-spread model: half spread in basis points of the fair price."""
    skew_bps_per_unit: float = 1.0
    """Fixed-spread model: the reservation price moves this many bps per inventory unit."""
    inventory_unit: float = 0.0
    """Inventory is divided by this before it enters a model; 0 means ``order_size``."""
    target_inventory: float = 0.0
    """Inventory the models skew towards (base units)."""
    # --- volatility
    sigma_half_life_s: float = 30.0
    """Half-life (event time) of the EWMA estimate of the mid's variance rate."""
    sigma_initial: float = 0.0
    """Volatility assumed before any tick has been seen (price per sqrt(s))."""
    warmup_s: float = 10.0
    """Event time of ticks the volatility estimate needs before the quoter quotes."""
    # --- ladder
    levels: int = 1
    level_spacing_bps: float = 2.0
    """Distance between consecutive levels of one side, bps of the reference price."""
    order_size: float = 0.001
    """Size of level 0 (base units)."""
    size_multiplier: float = 1.0
    """Each deeper level is this many times the size of the level before it."""
    min_spread_bps: float = 1.0
    """Lower bound of the level-0 spread (ask - bid), bps of the reference price."""
    max_spread_bps: float = 100.0
    """Upper bound of the level-0 spread, bps of the reference price."""
    price_band_bps: float = 100.0
    """No quote is placed farther than this from the reference price."""
    max_position: float = 0.0
    """With ``abs(inventory - target) >= max_position`` the side that would grow it is not
    quoted; 0 disables the limit."""
    # --- order management
    fair_price: FairPrice = "mid"
    """The price the model quotes around; ``index`` falls back to the mid while no fresh
    index price is known."""
    index_max_age_s: float = 5.0
    """An index price older than this (event time, against the tick) is not used."""
    refresh_tolerance_bps: float = 1.0
    """A live order within this distance of its desired price is left alone."""
    min_quote_lifetime_s: float = 1.0
    """A live order younger than this (event time) is not replaced."""
    cancel_retry_s: float = 2.0
    """A cancel that is not confirmed within this time is sent again."""
    max_cancel_retries: int = 2
    """Cancels sent again before an unconfirmed order is no longer tracked."""
    reject_backoff_s: float = 1.0
    """After a reject, a ladder slot waits this long before it places again."""
    post_only: bool = True

    def __post_init__(self) -> None:
        _check_params(self)

    def replace(self, changes: dict[str, Any]) -> QuotingParams:
        """These parameters with ``changes`` applied, validated as a whole.

        Raises ``ValueError`` naming the bad field; the parameters are then unchanged.
        """
        merged = {**msgspec.structs.asdict(self), **changes}
        try:
            return msgspec.convert(merged, type=QuotingParams)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid quoting parameters {changes!r}: {exc}") from None

    @property
    def unit(self) -> float:
        """The inventory unit the models count in."""
        return self.inventory_unit if self.inventory_unit > 0 else self.order_size


def _check_params(p: QuotingParams) -> None:
    positive = ("gamma", "kappa", "horizon_s", "sigma_half_life_s", "order_size")
    for name in positive:
        value = getattr(p, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    non_negative = (
        "half_spread_bps",
        "inventory_unit",
        "sigma_initial",
        "warmup_s",
        "level_spacing_bps",
        "min_spread_bps",
        "max_spread_bps",
        "price_band_bps",
        "max_position",
        "index_max_age_s",
        "refresh_tolerance_bps",
        "min_quote_lifetime_s",
        "cancel_retry_s",
        "reject_backoff_s",
    )
    for name in non_negative:
        value = getattr(p, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for name in ("skew_bps_per_unit", "target_inventory"):
        if not math.isfinite(getattr(p, name)):
            raise ValueError(f"{name} must be finite")
    if p.max_cancel_retries < 0:
        raise ValueError(f"max_cancel_retries must be >= 0, got {p.max_cancel_retries}")
    if not 1 <= p.levels <= 50:
        raise ValueError(f"levels must be between 1 and 50, got {p.levels}")
    if not (math.isfinite(p.size_multiplier) and p.size_multiplier > 0):
        raise ValueError(f"size_multiplier must be > 0, got {p.size_multiplier}")
    if p.max_spread_bps and p.min_spread_bps > p.max_spread_bps:
        raise ValueError(
            f"min_spread_bps ({p.min_spread_bps}) must not exceed max_spread_bps"
            f" ({p.max_spread_bps})"
        )


class MarketConfig(Config, frozen=True, kw_only=True):
    """One market the quoter quotes, with the exchange's trading rules for it."""

    venue: str
    symbol: str
    account: str = "main"
    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0
    index_basket: str | None = None
    """The basket of the index price (``IndexPrice.basket``) that concerns this market."""
    initial_inventory: float = 0.0
    """Base-asset position held when the quoter starts (fills move it from there)."""
    params: dict[str, ParamValue] = {}
    """Overrides of the configuration's ``defaults`` for this market."""

    def __post_init__(self) -> None:
        symbol_assets(self.symbol)  # raises on a symbol that is not BASE/QUOTE
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} of {self.key} must be > 0, got {value!r}")

    @property
    def key(self) -> str:
        return market_key(self.venue, self.symbol)


def _default_markets() -> tuple[MarketConfig, ...]:
    # Binance spot BTC/USDT's trading rules (PRICE_FILTER, LOT_SIZE, NOTIONAL filters).
    return (
        MarketConfig(
            venue="binance",
            symbol="BTC/USDT",
            tick_size=0.01,
            lot_size=0.00001,
            min_qty=0.00001,
            min_notional=5.0,
            index_basket="BTC",
        ),
    )


class QuotingConfig(Config, frozen=True, kw_only=True):
    """The quoter's whole configuration."""

    markets: tuple[MarketConfig, ...] = msgspec.field(default_factory=_default_markets)
    defaults: QuotingParams = QuotingParams()
    id_namespace: str = ""
    """Mixed into every client order id, so two deployments never share ids."""
    cancel_on_start: bool = True
    """A quoter that starts without saved state first cancels every order on its market,
    so orders of an earlier run never rest unmanaged."""
    orphans: Literal["cancel", "adopt"] = "cancel"
    """What the quoter does with an open order that has our ``mf-`` prefix but that this
    run never placed: cancel it, or adopt it (manage it as one of its own); either way an
    ``OrphanOrder`` alert says so."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for m in self.markets:
            if m.key in seen:
                raise ValueError(f"market {m.key} is configured twice")
            seen.add(m.key)
            self.params_for(m)  # validates the overrides at start-up

    def params_for(self, market: MarketConfig) -> QuotingParams:
        """The effective parameters of ``market``: defaults with its overrides."""
        if not market.params:
            return self.defaults
        return self.defaults.replace(dict(market.params))

    def market(self, key: str) -> MarketConfig | None:
        for m in self.markets:
            if m.key == key:
                return m
        return None


def load_quoting_config(path: str | Path | None) -> QuotingConfig:
    """The ``[quoting]`` table of a TOML file (or the whole file), or the defaults when
    ``path`` is None."""
    return load_section(path, "quoting", QuotingConfig)


def market_from_ccxt(
    venue: str,
    market: dict[str, Any],
    precision_mode: int,
    *,
    account: str = "main",
    index_basket: str | None = None,
) -> MarketConfig:
    """A :class:`MarketConfig` with the trading rules of a ccxt unified market (an entry of
    ``exchange.markets``; ``precision_mode`` is ``exchange.precisionMode``)."""
    spec = from_ccxt_market(market, precision_mode)
    return MarketConfig(
        venue=venue,
        symbol=str(market["symbol"]),
        account=account,
        tick_size=spec.tick_size,
        lot_size=spec.lot_size,
        min_qty=spec.min_qty,
        min_notional=spec.min_notional,
        index_basket=index_basket,
    )


def markets_toml(markets: tuple[MarketConfig, ...]) -> str:
    """``[[markets]]`` tables for a quoting configuration file."""
    out: list[str] = []
    for m in markets:
        out.append("[[markets]]")
        out.append(f"venue = {_toml_str(m.venue)}")
        out.append(f"symbol = {_toml_str(m.symbol)}")
        if m.account != "main":
            out.append(f"account = {_toml_str(m.account)}")
        for name in ("tick_size", "lot_size", "min_qty", "min_notional"):
            out.append(f"{name} = {getattr(m, name)!r}")
        if m.index_basket:
            out.append(f"index_basket = {_toml_str(m.index_basket)}")
        out.append("")
    return "\n".join(out)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
