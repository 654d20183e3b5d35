"""Risk for one quoted market inside a backtest's loop, as the risk service runs it live.

The market stage of :mod:`makerflow.operators.risk` (windows and limits over ticks, order
events, fills and index marks, a pause while the book is invalid, the state heartbeats of
every scope of the market) and the kill switch of each of those scopes
(:class:`~makerflow.operators.kill_switch.ScopeMachine`), on the same pure classes, in the
order the loop feeds them. Every method returns the machines' :class:`Transition` s for the
engine to publish (RiskState, Alert, cancel-alls) and hand to the quoter.

Not here (each market's loop is alone on its key): the asset exposure, account and global
PnL and index-oracle stages; their scopes are halted and resumed by commands only.
"""

from __future__ import annotations

from typing import Any

from makerflow.operators.kill_switch import ScopeMachine, Transition, command_problem
from makerflow.operators.risk_limits import (
    MARKET_KINDS,
    BreachTracker,
    MarketLimits,
    RiskConfig,
    apply_params,
    check_market,
)
from makerflow.operators.risk_scopes import signal
from makerflow.operators.risk_windows import MarketRisk, WindowSpec
from makerflow.schemas.events import (
    Alert,
    ControlCommand,
    DataQuality,
    Fill,
    OrderEvent,
    Tick,
    market_key,
)
from makerflow.schemas.scopes import covers, market_scope, scopes_of_market, validate_scope

BOOK_INVALID = frozenset({"gap", "crossed"})
"""Findings that pause the market until a good top of book (as the risk service's)."""
_LIMIT_FIELDS = frozenset(MarketLimits.__struct_fields__)


class RiskStage:
    def __init__(self, venue: str, symbol: str, account: str, config: RiskConfig) -> None:
        key = market_key(venue, symbol)
        self.key = key
        self.venue, self.symbol, self.account = venue, symbol, account
        spec = WindowSpec(config.window_ms * 1_000_000, config.slide_ms * 1_000_000)
        self.risk = MarketRisk(key, symbol, spec)
        self.limits = config.market_limits(key)
        self.tracker = BreachTracker()
        self.scope = market_scope(venue, symbol)
        self.machines = {s: ScopeMachine(s) for s in scopes_of_market(venue, symbol, account)}
        self.beat_ns = config.state_heartbeat_ms * 1_000_000
        self.beat: int | None = None
        self.book_why = ""
        self.book_bad_ts = 0

    # --- updates ---------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> list[Transition]:
        out = self._beats(tick.ts)
        if self.book_why and tick.ts > self.book_bad_ts and tick.bid < tick.ask:
            self.book_why = ""  # a good top of book after the finding: the book is back
            out += self._pause(tick.ts)
        self.risk.on_tick(tick)
        return out + self._judge()

    def on_order_event(self, ev: OrderEvent) -> list[Transition]:
        out = self._beats(ev.ts)
        self.risk.on_order_event(ev)
        return out + self._judge()

    def on_fill(self, fill: Fill) -> list[Transition]:
        out = self._beats(fill.ts)
        self.risk.on_fill(fill)
        return out + self._judge()

    def on_index(self, ts: int, price: float | None) -> list[Transition]:
        out = self._beats(ts)
        self.risk.on_index(price)
        return out

    def on_quality(self, finding: DataQuality) -> list[Transition]:
        if finding.kind not in BOOK_INVALID or self.book_why:
            return []
        self.book_why = f"book invalid ({finding.kind}): {finding.detail}"
        self.book_bad_ts = finding.ts
        return self._pause(finding.ts)

    def on_command(self, cmd: ControlCommand) -> tuple[list[Transition], list[Alert], str]:
        """A command to one of the market's scopes: transitions, the limits-changed alert,
        and why it was refused (empty when it was not)."""
        try:
            validate_scope(cmd.scope)
        except ValueError as exc:
            return [], [], str(exc)
        problem = command_problem(cmd)
        if problem is not None:
            return [], [], problem
        if not covers(cmd.scope, self.venue, self.symbol, self.account):
            return [], [], ""
        if cmd.command != "set_params":
            t = self.machines[cmd.scope].on_command(cmd)
            return ([t] if t is not None else []), [], ""
        if cmd.scope != self.scope:
            return [], [], ""
        # The market's limits; a quoting parameter on the shared topic is the quoter's.
        mine = {
            k.removeprefix("risk."): v
            for k, v in cmd.params.items()
            if k.removeprefix("risk.") in _LIMIT_FIELDS
        }
        if not mine:
            return [], [], ""
        try:
            self.limits = apply_params(self.limits, mine)
        except ValueError as exc:
            return [], [], str(exc)
        who = cmd.issued_by or "operator"
        message = f"{who} set {mine} on {cmd.scope}; limits now {self.limits}"
        alert = Alert(
            ts=cmd.ts, name="RiskLimitsChanged", severity="info", scope=cmd.scope, message=message
        )
        return self._judge(), [alert], ""

    # --- internals -------------------------------------------------------------------------

    def _judge(self) -> list[Transition]:
        m = self.risk.measures()
        breaches = check_market(m, self.limits)
        if not breaches and not self.tracker.active:
            # Nothing breached and nothing was active: signal() would leave the tracker's
            # (empty) active set as it is and send nothing. The common case on every tick,
            # so the metrics dict is not built for it.
            return []
        out: list[Transition] = []
        machine = self.machines[self.scope]
        for sig in signal(
            self.tracker,
            self.scope,
            m.ts,
            breaches,
            MARKET_KINDS,
            m.as_metrics(),
        ):
            machine.hold(sig.judged, sig.holding)
            t = machine.on_breach(sig.ts, sig.breaches, sig.metrics)
            if t is not None:
                out.append(t)
        return out

    def _beats(self, ts: int) -> list[Transition]:
        """Every scope's state again at the first event of each heartbeat period."""
        period = ts // self.beat_ns
        if self.beat is not None and period <= self.beat:
            return []
        self.beat = period
        out = []
        for machine in self.machines.values():
            t = machine.on_beat(ts, self.beat_ns)
            if t is not None:
                out.append(t)
        return out

    def _pause(self, ts: int) -> list[Transition]:
        reasons = (self.book_why,) if self.book_why else ()
        t = self.machines[self.scope].on_pause(ts, reasons)
        return [t] if t is not None else []

    def state(self) -> dict[str, Any]:
        return {s: m.published for s, m in self.machines.items()}
