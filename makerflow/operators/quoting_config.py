"""Configuration of the quoter: which markets it quotes, and the model and ladder parameters.

A file (``MAKERFLOW_CONFIG``, TOML) looks like::

    id_namespace = "paper-1"

    [defaults]            # QuotingParams shared by every market
    model = "glft"
    gamma = 3.0
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

The same table may also sit under ``[quoting]`` in a file shared by several services. There
the market facts (tick and lot size, minimums, fees, basket) belong to the file's top-level
``[[markets]]`` registry (:mod:`makerflow.schemas.markets`), and a ``[[quoting.markets]]``
entry names one (``market = "binance:BTC/USDT"``) with only the quoter's own settings.

Units. Prices are in the market's quote currency, time in seconds of event time, inventory and
order sizes in base units. ``sigma`` is the absolute standard deviation of the mid price per
square root of a second (what :class:`~makerflow.operators.volatility.GridVolatility`
estimates), ``kappa`` is in 1/price, ``A`` (``arrival_rate``) in 1/s and ``gamma`` in
1/quote currency, so the risk aversion keeps its meaning when ``order_size`` changes. The
defaults were measured on the recorded Binance BTC/USDT data (2024-08-08 23:54 to 00:05 UTC:
sigma 4-10 USDT/sqrt(s) on a 1 s grid, A 4-9 /s and kappa 0.18-0.8 /USDT fitted from its
trades); set ``gamma``, ``kappa``, ``arrival_rate`` and sizes per market for anything else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import msgspec

from makerflow.operators.ladder import from_ccxt_market
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.markets import Market

ModelKind = Literal["glft", "avellaneda_stoikov", "fixed_spread"]
FairPrice = Literal["mid", "microprice", "index"]

ParamValue = float | int | str | bool


class QuotingParams(Config, frozen=True, kw_only=True):
    """Model, ladder and order-management parameters of one market.

    Every field can be changed at run time by a ``set_params`` control command.
    """

    # --- model
    model: ModelKind = "glft"
    """``glft``: Gueant-Lehalle-Fernandez-Tapia's infinite-horizon quotes, the default for a
    market that never closes; ``avellaneda_stoikov`` (rolling or finite horizon);
    ``fixed_spread``."""
    gamma: float = 3.0
    """Risk aversion (1/quote currency). 3.0: on the recorded BTC data (calm and volatile
    minutes alike) GLFT then moves the reservation price by about one half spread at
    ``max_position`` = 0.01 BTC, so the side that reduces inventory reaches the mid there."""
    kappa: float = 0.3
    """Fill intensity decays as exp(-kappa * distance) (1/price); used until the estimate
    from trades is ready, or always with ``estimate_intensity = false``. 0.3 is the fit over
    the whole recording."""
    arrival_rate: float = 6.0
    """GLFT's A, trades per second and side reaching the mid; the fallback like ``kappa``."""
    horizon_s: float = 2.5
    """A-S rolling horizon (the time inventory is assumed to be held). 2.5 s makes the A-S
    inventory skew ``gamma sigma^2 tau`` GLFT's ``sigma c2`` on the recorded data: equal in
    its calm minutes, about twice it in the volatile ones."""
    rolling_horizon: bool = True
    """A-S: True, the time left is always ``horizon_s``; False, it runs down to
    ``session_end_ns`` (a real close) and stays at zero after it."""
    session_end_ns: int = 0
    """A-S finite horizon: event time (ns since the epoch) at which trading ends."""
    half_spread_bps: float = 5.0
    """Fixed-spread model: half spread in basis points of the fair price."""
    skew_bps_per_unit: float = 1.0
    """Fixed-spread model: the reservation price moves this many bps per base unit held."""
    target_inventory: float = 0.0
    """Inventory the models skew towards (base units)."""
    maker_fee_bps: float = 0.0
    """Maker fee in bps of the price (negative: a rebate). Added to each side's half spread:
    a fill must earn its fee back, a rebate lets the quote sit closer. Set it to the
    account's fee tier (the local exchange charges 10 bps by default)."""
    # --- volatility
    sigma_grid_s: float = 1.0
    """The mid is sampled on this event-time grid (aligned to the epoch) for the volatility."""
    sigma_half_life_s: float = 60.0
    """Half-life (event time) of the weights of the grid returns. 60 s: about 90 returns in
    the estimate (a standard error near 15 %), and the estimate follows the recording's
    jump from 4-5 to 8-9 USDT/sqrt(s) within a minute."""
    sigma_initial: float = 0.0
    """A seed for the volatility (price per sqrt(s)), taken as the steady state before the
    first tick; 0: none, the estimate is the stream's own from its first grid return."""
    warmup_s: float = 30.0
    """Event time of grid returns the volatility needs before the quoter quotes (without a
    seed). 30 s: 30 returns, a standard error near 26 %, the estimate unbiased from the start."""
    # --- arrival intensity
    estimate_intensity: bool = True
    """Fit A and kappa from the market's trades (ticks with reason ``trade``)."""
    intensity_window_s: float = 120.0
    """Event time of trades the fit uses (slices of 10 s, aligned to the epoch)."""
    intensity_min_trades: int = 300
    """Trades the window must hold before its fit is used."""
    kappa_min: float = 0.02
    """Bounds of the fitted kappa (1/price): a mean depth of at most 50 USDT..."""
    kappa_max: float = 20.0
    """...and at least 0.05 USDT."""
    # --- ladder
    levels: int = 1
    level_spacing_bps: float = 2.0
    """Distance between consecutive levels of one side, bps of the reference price."""
    order_size: float = 0.001
    """Size of level 0 (base units)."""
    size_multiplier: float = 1.0
    """Each deeper level is this many times the size of the level before it."""
    min_spread_bps: float = 0.1
    """Lower bound of the level-0 spread (ask - bid), bps of the reference price; a safety
    floor below the model (GLFT gives 0.4-1.8 bps on the recorded data)."""
    max_spread_bps: float = 100.0
    """Upper bound of the level-0 spread, bps of the reference price."""
    price_band_bps: float = 100.0
    """No quote is placed farther than this from the reference price."""
    max_position: float | None = None
    """With ``abs(inventory - target) >= max_position`` (base units) the side that would grow
    it is not quoted, and no order of that side may take it past the limit. None: ten times
    ``order_size``; ``inf`` disables the limit."""
    size_skew: float = 0.5
    """The side that adds to the inventory quotes ``1 - size_skew * |q| / max_position`` of
    its size (0: no size skew); the reducing side keeps its size."""
    # --- order management
    fair_price: FairPrice = "mid"
    """The price the model quotes around; ``index`` falls back to the mid while no fresh
    index price is known."""
    index_max_age_s: float = 5.0
    """An index price older than this (event time, against the tick) is not used."""
    refresh_fraction: float = 0.25
    """A live order is moved once its desired price is more than this fraction of the half
    spread away (0 < f <= 1): the tolerance scales with the spread and is never wider."""
    refresh_tolerance_bps: float = 0.0
    """An optional absolute cap (bps of the reference) on that tolerance; 0: none."""
    min_quote_lifetime_s: float = 1.0
    """A live order younger than this (event time) is not replaced, unless it has ended up on
    the wrong side of the mid or a whole half spread away from its desired price. 1 s: on
    the recorded data the mid moves by the tolerance within milliseconds, so this sets the
    order rate, at most one place a second per level and side, inside Binance's
    200 000 orders per 24 h with one level a side."""
    max_quote_age_s: float = 30.0
    """A live order older than this is replaced even when its price is still right; 0: no
    ceiling."""
    cancel_retry_s: float = 2.0
    """A cancel that is not confirmed within this time is sent again."""
    max_cancel_retries: int = 2
    """Cancels sent again before an unconfirmed order is no longer tracked."""
    reject_backoff_s: float = 1.0
    """After a reject, a ladder slot waits this long before it places again."""
    max_unresolved_orders: int = 0
    """Orders of the market the venue has not closed (pending, unknown, open, cancelling)
    beyond which no new order is placed, only cancels: when execution or the venue stops
    answering, the quoter must not keep adding orders (nor grow its order state without
    bound). 0: four per ladder slot (``8 * levels``)."""
    post_only: bool = True

    @property
    def unresolved_limit(self) -> int:
        return self.max_unresolved_orders or 8 * self.levels

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
    def position_limit(self) -> float:
        """The effective ``max_position`` (base units)."""
        return self.max_position if self.max_position is not None else 10.0 * self.order_size


def _check_params(p: QuotingParams) -> None:
    positive = (
        "gamma",
        "kappa",
        "arrival_rate",
        "horizon_s",
        "sigma_grid_s",
        "sigma_half_life_s",
        "intensity_window_s",
        "kappa_min",
        "kappa_max",
        "order_size",
    )
    for name in positive:
        value = getattr(p, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    non_negative = (
        "half_spread_bps",
        "sigma_initial",
        "warmup_s",
        "level_spacing_bps",
        "min_spread_bps",
        "max_spread_bps",
        "price_band_bps",
        "index_max_age_s",
        "refresh_tolerance_bps",
        "min_quote_lifetime_s",
        "max_quote_age_s",
        "cancel_retry_s",
        "reject_backoff_s",
    )
    for name in non_negative:
        value = getattr(p, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for name in ("skew_bps_per_unit", "target_inventory", "maker_fee_bps"):
        if not math.isfinite(getattr(p, name)):
            raise ValueError(f"{name} must be finite")
    if p.max_position is not None and not p.max_position > 0:
        raise ValueError(
            f"max_position must be > 0 (inf disables the limit), got {p.max_position!r}"
        )
    if not 0 <= p.size_skew <= 1:
        raise ValueError(f"size_skew must be between 0 and 1, got {p.size_skew!r}")
    if not 0 < p.refresh_fraction <= 1:
        raise ValueError(
            f"refresh_fraction must be in (0, 1] (a tolerance wider than the half spread"
            f" leaves stale quotes), got {p.refresh_fraction!r}"
        )
    if p.kappa_min >= p.kappa_max:
        raise ValueError(f"kappa_min ({p.kappa_min}) must be below kappa_max ({p.kappa_max})")
    if p.intensity_min_trades < 0:
        raise ValueError(f"intensity_min_trades must be >= 0, got {p.intensity_min_trades}")
    if p.model == "avellaneda_stoikov" and not p.rolling_horizon and p.session_end_ns <= 0:
        raise ValueError(
            "rolling_horizon = false needs session_end_ns (when trading ends); a market that"
            " never closes wants model = glft or a rolling horizon"
        )
    if p.max_cancel_retries < 0:
        raise ValueError(f"max_cancel_retries must be >= 0, got {p.max_cancel_retries}")
    if p.max_unresolved_orders < 0:
        raise ValueError(f"max_unresolved_orders must be >= 0, got {p.max_unresolved_orders}")
    if not 1 <= p.levels <= 50:
        raise ValueError(f"levels must be between 1 and 50, got {p.levels}")
    if not (math.isfinite(p.size_multiplier) and p.size_multiplier > 0):
        raise ValueError(f"size_multiplier must be > 0, got {p.size_multiplier}")
    if p.max_spread_bps and p.min_spread_bps > p.max_spread_bps:
        raise ValueError(
            f"min_spread_bps ({p.min_spread_bps}) must not exceed max_spread_bps"
            f" ({p.max_spread_bps})"
        )


class MarketConfig(Market, frozen=True, kw_only=True):
    """One market the quoter quotes: the registry's :class:`~makerflow.schemas.markets.Market`
    (venue rules, fees, basket; filled in from the file's ``[[markets]]`` registry) and the
    quoter's own settings for it."""

    initial_inventory: float = 0.0
    """Base-asset position held when the quoter starts (fills move it from there)."""
    params: dict[str, ParamValue] = {}
    """Overrides of the configuration's ``defaults`` for this market."""


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

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for m in self.markets:
            if m.key in seen:
                raise ValueError(f"market {m.key} is configured twice")
            seen.add(m.key)
            self.params_for(m)  # validates the overrides at start-up

    def params_for(self, market: MarketConfig) -> QuotingParams:
        """The effective parameters of ``market``: defaults with its overrides."""
        changes: dict[str, ParamValue] = dict(market.params)
        if market.maker_fee_bps and "maker_fee_bps" not in changes:
            changes["maker_fee_bps"] = market.maker_fee_bps  # the registry's fee tier
        if not changes:
            return self.defaults
        return self.defaults.replace(changes)

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
