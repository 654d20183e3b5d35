"""Risk limits and the kill-switch state machine: pure logic, no I/O, no clock.

Limits come from configuration per market, per asset, per account and globally (every limit
is optional; ``None`` means "not limited"). A check returns :class:`Breach` es; a
:class:`BreachTracker` turns them into *onsets* (a kind of breach that was not active on the
previous evaluation), so a condition that persists raises one halt, not one per event.

:class:`ScopeMachine` is the state of one scope (``global``, ``account:<a>``, ``asset:<A>``,
``market:<venue>:<symbol>``). A breach onset or a manual ``halt`` command moves it to HALTED
with the reasons; only an explicit ``resume`` command moves it back to ACTIVE. Risk never
resumes on its own, and a resume does not outlive the breach: the machine keeps the
breaches that still hold (each stage tells it when its set of active breaches changes), and a
resume while one holds leaves the scope HALTED at once, with that breach as the reason.

Market-data staleness below ``max_data_age_ms`` is not a kill switch but a *pause*
(``pause_data_age_ms``): the scope reads PAUSED, quotes are pulled, and it is ACTIVE again by
itself when fresh data comes back.

Every state is repeated each heartbeat period of event time (:meth:`ScopeMachine.on_beat`), and
a scope's event time never goes backwards (a resume stamped with the operator's clock during a
replay of old data is not undone by the replay's older breaches).
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


def command_problem(cmd: ControlCommand) -> str | None:
    """Why ``cmd`` must not be applied, or ``None``: a resume names who and why."""
    if cmd.command == "resume" and not (cmd.issued_by.strip() and cmd.reason.strip()):
        return f"resume of {cmd.scope} refused: a resume must name who (issued_by) and why (reason)"
    return None


def _judged_kind(kind: str, judged: frozenset[str]) -> bool:
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
            kept = (k for k in self.active if not _judged_kind(k, j))
            self.active = frozenset(kept) | frozenset(found)
        return new, self.active != before

    def onsets(
        self, breaches: Iterable[Breach], judged: Iterable[str] | None = None
    ) -> tuple[Breach, ...]:
        """The breaches that were not active before (see :meth:`update`)."""
        return self.update(breaches, judged)[0]


# --- the state machine ---------------------------------------------------------------------------


Status = Literal["ACTIVE", "HALTED"]
Published = Literal["ACTIVE", "PAUSED", "HALTED"]


@dataclass(frozen=True)
class Transition:
    """What a scope's machine decided: the new state and what to tell the world."""

    scope: str
    ts: int
    status: Published
    reasons: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    alert: tuple[str, Literal["info", "warning", "critical"], str] | None = None
    """(name, severity, message) of the alert to raise, if any."""
    cancel_all: bool = False
    since: int = 0
    heartbeat: bool = False


KILL_SWITCH_ALERT = "KillSwitchEngaged"
RESUME_ALERT = "KillSwitchReleased"
PAUSE_ALERT = "QuotesPaused"
UNPAUSE_ALERT = "QuotesRestored"


@dataclass
class ScopeMachine:
    """The ACTIVE/HALTED state of one scope, the breaches that hold now, and a pause."""

    scope: str
    status: Status = "ACTIVE"
    reasons: tuple[str, ...] = ()
    since: int = 0
    held: dict[str, str] = field(default_factory=dict)
    """Kind -> message of every breach that holds now (a resume is refused while any does)."""
    paused: tuple[str, ...] = ()
    paused_since: int = 0
    last_ts: int = 0
    """The scope's event time: the newest ts it has seen; never goes backwards."""
    beat: int | None = None
    """The heartbeat period last published."""

    @property
    def published(self) -> Published:
        if self.status == "HALTED":
            return "HALTED"
        return "PAUSED" if self.paused else "ACTIVE"

    def _clock(self, ts: int) -> int:
        self.last_ts = max(self.last_ts, ts)
        return self.last_ts

    def _now(
        self,
        ts: int,
        metrics: Mapping[str, float] | None = None,
        alert: tuple[str, Literal["info", "warning", "critical"], str] | None = None,
        cancel_all: bool = False,
        heartbeat: bool = False,
    ) -> Transition:
        status = self.published
        if status == "HALTED":
            reasons, since = self.reasons, self.since
        elif status == "PAUSED":
            reasons, since = self.paused, self.paused_since
        else:
            reasons, since = (), max(self.since, self.paused_since)
        return Transition(
            self.scope,
            ts,
            status,
            reasons,
            dict(metrics or {}),
            alert,
            cancel_all,
            since,
            heartbeat,
        )

    def hold(self, judged: Iterable[str], holding: Iterable[Breach]) -> None:
        """What a stage judged now: of the kinds (families) in ``judged``, ``holding`` hold."""
        j = frozenset(judged)
        for kind in [k for k in self.held if _judged_kind(k, j)]:
            del self.held[kind]
        for b in holding:
            self.held[b.kind] = self.held.get(b.kind, b.message)

    def on_breach(
        self, ts: int, breaches: Sequence[Breach], metrics: Mapping[str, float]
    ) -> Transition | None:
        msgs = tuple(b.message for b in breaches)
        at, ts = ts, self._clock(ts)
        if not msgs:
            return None
        if self.status == "HALTED":
            new = tuple(m for m in msgs if m not in self.reasons)
            if not new:
                return None
            self.reasons = self.reasons + new
            return self._now(ts, metrics)
        self.status, self.reasons, self.since = "HALTED", msgs, at
        text = f"risk halted {self.scope}: " + "; ".join(msgs)
        return self._now(ts, metrics, (KILL_SWITCH_ALERT, "critical", text), True)

    def on_pause(self, ts: int, reasons: tuple[str, ...]) -> Transition | None:
        """Market data went stale (``reasons``) or came back (empty)."""
        at, ts = ts, self._clock(ts)
        was = self.paused
        if bool(reasons) == bool(was):
            return None
        self.paused = reasons
        if reasons:
            self.paused_since = at
        if self.status == "HALTED":
            return None  # the halt is what is published; the pause shows after a resume
        if reasons:
            text = f"{self.scope} paused, quotes pulled: " + "; ".join(reasons)
            return self._now(ts, alert=(PAUSE_ALERT, "warning", text), cancel_all=True)
        text = f"{self.scope} data is fresh again, quoting restored (was: {'; '.join(was)})"
        return self._now(ts, alert=(UNPAUSE_ALERT, "info", text))

    def on_beat(self, ts: int, period_ns: int) -> Transition | None:
        """The state again, once per ``period_ns`` of event time."""
        ts = self._clock(ts)
        period = ts // period_ns
        if self.beat is not None and period <= self.beat:
            return None
        self.beat = period
        return self._now(ts, heartbeat=True)

    def on_command(self, cmd: ControlCommand) -> Transition | None:
        who = cmd.issued_by or "operator"
        at, ts = cmd.ts, self._clock(cmd.ts)
        if cmd.command == "halt":
            reason = f"manual halt by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            was = self.status
            self.status = "HALTED"
            if was == "HALTED":
                self.reasons = (*self.reasons, reason)
                return self._now(ts, cancel_all=True)
            self.reasons, self.since = (reason,), at
            return self._now(
                ts,
                alert=(KILL_SWITCH_ALERT, "critical", f"{self.scope} halted: {reason}"),
                cancel_all=True,
            )
        if cmd.command == "resume":
            asked = f"resume of {self.scope} by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            if self.held:
                # The person resumed, the breach did not go away: halted again at once.
                holding = tuple(self.held.values())
                self.status, self.reasons, self.since = "HALTED", holding, at
                text = f"{asked} refused, still breached: " + "; ".join(holding)
                return self._now(ts, alert=(KILL_SWITCH_ALERT, "critical", text), cancel_all=True)
            was, old = self.status, self.reasons
            self.status, self.reasons, self.since = "ACTIVE", (), at
            if was == "ACTIVE":
                return self._now(ts)
            msg = f"{self.scope} resumed by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            msg += " (was halted for: " + "; ".join(old) + ")"
            return self._now(ts, alert=(RESUME_ALERT, "info", msg))
        return None

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.status,
            self.reasons,
            self.since,
            tuple(self.held.items()),
            self.paused,
            self.paused_since,
            self.last_ts,
            self.beat,
        )

    @classmethod
    def restore(cls, scope: str, snap: tuple[Any, ...]) -> ScopeMachine:
        status: Status = "HALTED" if snap[0] == "HALTED" else "ACTIVE"
        m = cls(scope, status, snap[1], snap[2])
        if len(snap) > 3:
            m.held = dict(snap[3])
            m.paused, m.paused_since, m.last_ts, m.beat = snap[4], snap[5], snap[6], snap[7]
        return m
