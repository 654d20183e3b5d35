"""Risk limits and the kill-switch state machine: pure logic, no I/O, no clock.

Limits come from configuration per market, per asset, per account and globally (every limit
is optional; ``None`` means "not limited"). A check returns :class:`Breach` es; a
:class:`BreachTracker` turns them into *onsets* (a kind of breach that was not active on the
previous evaluation), so a condition that persists raises one halt, not one per event.

:class:`ScopeMachine` is the state of one scope (``global``, ``account:<a>``, ``asset:<A>``,
``market:<venue>:<symbol>``). A breach onset or a manual ``halt`` command moves it to HALTED
with the reasons; only an explicit ``resume`` command moves it back to ACTIVE. Risk never
resumes on its own: after a resume, a breach halts again only when it clears and comes back
(or a new kind of breach starts), since the person who resumed has seen the one that halted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from makerflow.operators.risk_windows import MarketMeasures, PortfolioMeasures
from makerflow.schemas.config import Config
from makerflow.schemas.events import ControlCommand
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
    """Market data older than this (wall clock, at the edge) halts the market."""


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
    """A market risk watches; halts of a covering scope cancel its orders."""

    venue: str
    symbol: str
    account: str = "main"
    index_basket: str | None = None
    """Mark PnL to this index basket's price (else to the mid)."""
    limits: MarketLimits = MarketLimits()

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"


class RiskConfig(Config, frozen=True, kw_only=True):
    """Configuration of the risk service (TOML, ``MAKERFLOW_CONFIG``), for example::

        window_ms = 60000          # judged over the last minute ...
        slide_ms = 5000            # ... in 5 s steps, aligned to the epoch
        [[markets]]
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


@dataclass
class BreachTracker:
    """Which kinds of breach are active; reports each kind once, when it starts."""

    active: frozenset[str] = frozenset()

    def onsets(
        self, breaches: Iterable[Breach], judged: Iterable[str] | None = None
    ) -> tuple[Breach, ...]:
        """The breaches that were not active before. ``judged`` names the kinds (or kind
        families, the part before ``:``) this evaluation looked at, default all; kinds it did
        not look at stay as they were, so a staleness check does not clear a price breach."""
        found = {b.kind: b for b in breaches}
        new = tuple(b for k, b in found.items() if k not in self.active)
        if judged is None:
            self.active = frozenset(found)
        else:
            j = frozenset(judged)
            kept = (k for k in self.active if k not in j and k.partition(":")[0] not in j)
            self.active = frozenset(kept) | frozenset(found)
        return new


# --- the state machine ---------------------------------------------------------------------------


Status = Literal["ACTIVE", "HALTED"]


@dataclass(frozen=True)
class Transition:
    """What a scope's machine decided: the new state and what to tell the world."""

    scope: str
    ts: int
    status: Status
    reasons: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    alert: tuple[str, Literal["info", "warning", "critical"], str] | None = None
    """(name, severity, message) of the alert to raise, if any."""
    cancel_all: bool = False


KILL_SWITCH_ALERT = "KillSwitchEngaged"
RESUME_ALERT = "KillSwitchReleased"


@dataclass
class ScopeMachine:
    """The ACTIVE/HALTED state of one scope."""

    scope: str
    status: Status = "ACTIVE"
    reasons: tuple[str, ...] = ()
    since: int = 0

    def on_breach(
        self, ts: int, breaches: Sequence[Breach], metrics: Mapping[str, float]
    ) -> Transition | None:
        msgs = tuple(b.message for b in breaches)
        if not msgs:
            return None
        if self.status == "HALTED":
            new = tuple(m for m in msgs if m not in self.reasons)
            if not new:
                return None
            self.reasons = self.reasons + new
            return Transition(self.scope, ts, "HALTED", self.reasons, dict(metrics))
        self.status, self.reasons, self.since = "HALTED", msgs, ts
        text = f"risk halted {self.scope}: " + "; ".join(msgs)
        return Transition(
            self.scope,
            ts,
            "HALTED",
            msgs,
            dict(metrics),
            (KILL_SWITCH_ALERT, "critical", text),
            True,
        )

    def on_command(self, cmd: ControlCommand) -> Transition | None:
        who = cmd.issued_by or "operator"
        if cmd.command == "halt":
            reason = f"manual halt by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            was = self.status
            self.status = "HALTED"
            if was == "HALTED":
                self.reasons = (*self.reasons, reason)
                return Transition(self.scope, cmd.ts, "HALTED", self.reasons, cancel_all=True)
            self.reasons, self.since = (reason,), cmd.ts
            return Transition(
                self.scope,
                cmd.ts,
                "HALTED",
                self.reasons,
                alert=(KILL_SWITCH_ALERT, "critical", f"{self.scope} halted: {reason}"),
                cancel_all=True,
            )
        if cmd.command == "resume":
            was, old = self.status, self.reasons
            self.status, self.reasons, self.since = "ACTIVE", (), cmd.ts
            if was == "ACTIVE":
                return Transition(self.scope, cmd.ts, "ACTIVE", ())
            msg = f"{self.scope} resumed by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            msg += " (was halted for: " + "; ".join(old) + ")"
            return Transition(self.scope, cmd.ts, "ACTIVE", (), alert=(RESUME_ALERT, "info", msg))
        return None

    def snapshot(self) -> tuple[str, tuple[str, ...], int]:
        return self.status, self.reasons, self.since

    @classmethod
    def restore(cls, scope: str, snap: tuple[str, tuple[str, ...], int]) -> ScopeMachine:
        status: Status = "HALTED" if snap[0] == "HALTED" else "ACTIVE"
        return cls(scope, status, snap[1], snap[2])
