"""Risk limits: pure logic, no I/O, no clock.

Limits come from configuration per market, per asset, per account and globally (every limit
is optional; ``None`` means "not limited"). A check returns :class:`Breach` es; a
:class:`BreachTracker` turns them into *onsets* (a kind of breach that was not active on the
previous evaluation) and says when the set of active breaches changed (an onset or a clear),
so a condition that persists raises one halt, not one per event, and the kill switch
(:mod:`makerflow.operators.kill_switch`) knows what still holds when someone resumes.

Market-data staleness below ``max_data_age_ms`` is not a kill switch but a *pause*
(``pause_data_age_ms``): the scope reads PAUSED, quotes are pulled, and it is ACTIVE again by
itself when fresh data comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from makerflow.operators.risk_portfolio import PortfolioMeasures
from makerflow.operators.risk_windows import MarketMeasures
from makerflow.schemas.config import Config
from makerflow.schemas.events import market_key
from makerflow.schemas.scopes import GLOBAL, covers, validate_scope

# --- configuration ------------------------------------------------------------------------------


class MarketLimits(Config, frozen=True, kw_only=True):
    """Limits on one market. Rates are judged only once ``min_orders`` orders were submitted
    in the window, so two rejects out of three orders do not halt trading."""

    max_realized_vol_bps: float | None = None
    max_move_bps: float | None = 500.0
    max_open_notional: float | None = None
    max_reject_rate: float | None = None
    max_cancel_rate: float | None = None
    min_orders: int = 20
    max_position: float | None = None
    """Absolute position in the base asset from this market's fills."""
    max_drawdown: float | None = None
    """In the quote asset, from the market's PnL high-water mark."""
    max_loss: float | None = None
    """In the quote asset: halt when PnL falls below ``-max_loss``."""
    max_data_age_ms: int | None = None
    """Market data older than this (wall clock, at the edge) halts the market (the kill
    switch: a person resumes)."""
    pause_data_age_ms: int | None = 3_000
    """Market data older than this pauses the market: its quotes are pulled (risk sends a
    cancel-all, the quoter and the risk gate read PAUSED) until fresh data comes back. On by
    default wherever a wall clock runs (live runs and the demo)."""


class AssetLimits(Config, frozen=True, kw_only=True):
    """Limits on each account's exposure to one asset, in units of the asset."""

    max_long: float | None = None
    max_short: float | None = None
    """A positive number: exposure below ``-max_short`` breaches."""


class PortfolioLimits(Config, frozen=True, kw_only=True):
    """Limits on an account's (or every account's) summed PnL and open-order notional."""

    max_drawdown: float | None = None
    max_loss: float | None = None
    max_open_notional: float | None = None


class BasketLimits(Config, frozen=True, kw_only=True):
    """Index-oracle deviation limit of one index basket, and the scope its breach halts."""

    max_oracle_deviation_bps: float | None = 100.0
    halt_scope: str = GLOBAL


class MarketConfig(Config, frozen=True, kw_only=True):
    """A market risk watches; halts of a covering scope cancel its orders.

    In a file with a ``[[markets]]`` registry (:mod:`makerflow.schemas.markets`) an entry
    names a registry market (``market = "binance:BTC/USDT"``) and states only its
    ``limits``: venue, symbol, account and ``index_basket`` are filled in from the registry
    (a restated one must agree), and without entries risk watches every registry market."""

    venue: str
    symbol: str
    account: str = "main"
    index_basket: str | None = None
    """Mark PnL to this index basket's price (else to the mid)."""
    limits: MarketLimits = MarketLimits()

    @property
    def key(self) -> str:
        return market_key(self.venue, self.symbol)


class RiskConfig(Config, frozen=True, kw_only=True):
    """Configuration of the risk service (TOML, ``MAKERFLOW_CONFIG``), for example::

        window_ms = 60000          # judged over the last minute ...
        slide_ms = 5000            # ... in 5 s steps, aligned to the epoch
        [[markets]]                # under [risk] in a shared file: market = "binance:BTC/USDT"
        venue = "binance"
        symbol = "BTC/USDT"
        index_basket = "BTC"
        [markets.limits]
        max_move_bps = 300.0
        max_data_age_ms = 5000
        max_reject_rate = 0.3
        [assets.BTC]
        max_long = 5.0
        max_short = 5.0
        [accounts.main]
        max_drawdown = 20000.0
        [baskets.BTC]
        max_oracle_deviation_bps = 150.0
        halt_scope = "asset:BTC"

    A limit left out is not enforced (TOML has no null), except ``max_move_bps`` (500) and
    ``max_oracle_deviation_bps`` (100), which are on by default.
    """

    window_ms: int = 60_000
    """Length of the measurement window; aligned to the Unix epoch."""
    slide_ms: int = 5_000
    """Slide of the window; equal to ``window_ms`` for tumbling windows."""
    heartbeat_ms: int = 1_000
    """How often the wall-clock edge checks market-data staleness."""
    state_heartbeat_ms: int = 1_000
    """Every scope's RiskState is published again each period of event time (at the first
    event of each period), so a late starter knows every scope within one period."""
    markets: tuple[MarketConfig, ...] = ()
    default_market_limits: MarketLimits = MarketLimits()
    """Limits of markets that appear in the data but not in ``markets``."""
    assets: dict[str, AssetLimits] = {}
    accounts: dict[str, PortfolioLimits] = {}
    global_limits: PortfolioLimits = PortfolioLimits()
    baskets: dict[str, BasketLimits] = {}
    default_basket_limits: BasketLimits = BasketLimits()

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.slide_ms <= 0 or self.window_ms % self.slide_ms:
            raise ValueError(
                f"window_ms={self.window_ms} must be a positive multiple of"
                f" slide_ms={self.slide_ms}"
            )
        for basket in self.baskets.values():
            validate_scope(basket.halt_scope)
        if self.state_heartbeat_ms <= 0:
            raise ValueError(f"state_heartbeat_ms must be positive, got {self.state_heartbeat_ms}")

    def market(self, key: str) -> MarketConfig | None:
        for m in self.markets:
            if m.key == key:
                return m
        return None

    def market_limits(self, key: str) -> MarketLimits:
        m = self.market(key)
        return m.limits if m is not None else self.default_market_limits

    def basket_limits(self, basket: str) -> BasketLimits:
        return self.baskets.get(basket, self.default_basket_limits)

    def portfolio_limits(self, scope: str) -> PortfolioLimits:
        if scope == GLOBAL:
            return self.global_limits
        return self.accounts.get(scope.partition(":")[2], PortfolioLimits())

    def markets_in_scope(self, scope: str) -> tuple[MarketConfig, ...]:
        """The configured markets a halt of ``scope`` stops."""
        return tuple(m for m in self.markets if covers(scope, m.venue, m.symbol, m.account))


L = TypeVar("L", MarketLimits, AssetLimits, PortfolioLimits)


def apply_params(limits: L, params: Mapping[str, float | int | str | bool]) -> L:
    """``limits`` with ``params`` applied (``set_params``). A ValueError names the bad one.

    The value ``"none"`` (or ``"off"``) removes a limit."""
    fields = set(limits.__struct_fields__)
    changes: dict[str, Any] = {}
    for name, value in params.items():
        if name not in fields:
            raise ValueError(
                f"unknown limit {name!r} for {type(limits).__name__}; known: {sorted(fields)}"
            )
        changes[name] = None if str(value).lower() in ("none", "off", "null") else value
    merged = {**msgspec.structs.asdict(limits), **changes}
    try:
        return msgspec.convert(merged, type=type(limits), strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad limit value: {exc}") from None


# --- checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breach:
    """One limit exceeded: ``kind`` names the limit, ``message`` says it for people."""

    kind: str
    value: float
    limit: float
    message: str


def _over(kind: str, label: str, value: float, limit: float | None, unit: str) -> Breach | None:
    if limit is None or not value > limit:
        return None
    return Breach(kind, value, limit, f"{label} {value:.6g}{unit} > limit {limit:.6g}{unit}")


def check_market(m: MarketMeasures, lim: MarketLimits) -> tuple[Breach, ...]:
    found = [
        _over(
            "realized_vol",
            "realized volatility",
            m.realized_vol_bps,
            lim.max_realized_vol_bps,
            " bps",
        ),
        _over("largest_move", "largest move", m.largest_move_bps, lim.max_move_bps, " bps"),
        _over("open_notional", "open-order notional", m.open_notional, lim.max_open_notional, ""),
        _over("position", "position", abs(m.position), lim.max_position, ""),
        _over("drawdown", "drawdown", m.drawdown, lim.max_drawdown, ""),
        _over("loss", "loss", -m.pnl, lim.max_loss, ""),
    ]
    if m.orders_submitted >= lim.min_orders:
        found.append(
            _over("reject_rate", "order reject rate", m.reject_rate, lim.max_reject_rate, "")
        )
        found.append(
            _over("cancel_rate", "order cancel rate", m.cancel_rate, lim.max_cancel_rate, "")
        )
    return tuple(b for b in found if b is not None)


def check_exposure(
    account: str, asset: str, exposure: float, lim: AssetLimits
) -> tuple[Breach, ...]:
    found = [
        _over(
            f"exposure_long:{account}", f"{account} {asset} exposure", exposure, lim.max_long, ""
        ),
        _over(
            f"exposure_short:{account}",
            f"{account} {asset} short exposure",
            -exposure,
            lim.max_short,
            "",
        ),
    ]
    return tuple(b for b in found if b is not None)


def check_portfolio(p: PortfolioMeasures, lim: PortfolioLimits) -> tuple[Breach, ...]:
    found = [
        _over("drawdown", "drawdown", p.drawdown, lim.max_drawdown, ""),
        _over("loss", "loss", -p.pnl, lim.max_loss, ""),
        _over("open_notional", "open-order notional", p.open_notional, lim.max_open_notional, ""),
    ]
    return tuple(b for b in found if b is not None)


def check_deviation(
    basket: str, deviation_bps: float | None, lim: BasketLimits
) -> tuple[Breach, ...]:
    if deviation_bps is None:
        return ()
    b = _over(
        f"oracle_deviation:{basket}",
        f"index {basket} vs oracle deviation",
        deviation_bps,
        lim.max_oracle_deviation_bps,
        " bps",
    )
    return (b,) if b else ()


def check_staleness(age_ns: int, max_age_ms: int | None) -> tuple[Breach, ...]:
    if max_age_ms is None:
        return ()
    b = _over("stale", "market data age", age_ns / 1e9, max_age_ms / 1e3, " s")
    return (b,) if b else ()


MARKET_KINDS = frozenset(
    {
        "realized_vol",
        "largest_move",
        "open_notional",
        "position",
        "drawdown",
        "loss",
        "reject_rate",
        "cancel_rate",
    }
)
"""The kinds :func:`check_market` judges."""


def judged_kind(kind: str, judged: frozenset[str]) -> bool:
    return kind in judged or kind.partition(":")[0] in judged


@dataclass
class BreachTracker:
    """Which kinds of breach are active; reports each kind once, when it starts."""

    active: frozenset[str] = frozenset()

    def update(
        self, breaches: Iterable[Breach], judged: Iterable[str] | None = None
    ) -> tuple[tuple[Breach, ...], bool]:
        """The breaches that were not active before, and whether the active set changed
        (an onset or a clear). ``judged`` names the kinds (or kind families, the part before
        ``:``) this evaluation looked at, default all; kinds it did not look at stay as they
        were, so a staleness check does not clear a price breach."""
        found = {b.kind: b for b in breaches}
        new = tuple(b for k, b in found.items() if k not in self.active)
        before = self.active
        if judged is None:
            self.active = frozenset(found)
        else:
            j = frozenset(judged)
            kept = (k for k in self.active if not judged_kind(k, j))
            self.active = frozenset(kept) | frozenset(found)
        return new, self.active != before

    def onsets(
        self, breaches: Iterable[Breach], judged: Iterable[str] | None = None
    ) -> tuple[Breach, ...]:
        """The breaches that were not active before (see :meth:`update`)."""
        return self.update(breaches, judged)[0]
