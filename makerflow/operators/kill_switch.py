"""The kill switch of one scope: a pure state machine, no I/O, no clock.

:class:`ScopeMachine` is the state of one scope (``global``, ``account:<a>``, ``asset:<A>``,
``market:<venue>:<symbol>``). A breach onset or a manual ``halt`` command moves it to HALTED
with the reasons; only an explicit ``resume`` command moves it back to ACTIVE, and only while
no breach holds: the machine keeps the breaches that hold now (each stage says when its set
of active breaches changes), and a resume while one holds leaves the scope HALTED at once,
with that breach as the reason. Stale data or an invalid book *pauses* the scope (PAUSED),
which lifts by itself. Every state is repeated once per heartbeat period of event time
(:meth:`ScopeMachine.on_beat`), and the scope's event time never goes backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from makerflow.operators.risk_limits import Breach, judged_kind
from makerflow.schemas.events import Alert, ControlCommand, RiskState


def command_problem(cmd: ControlCommand) -> str | None:
    """Why ``cmd`` must not be applied, or ``None``: a resume names who and why."""
    if cmd.command == "resume" and not (cmd.issued_by.strip() and cmd.reason.strip()):
        return f"resume of {cmd.scope} refused: a resume must name who (issued_by) and why (reason)"
    return None


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

    def risk_state(self) -> RiskState:
        """The state this transition publishes (the risk service's and the backtest's)."""
        return RiskState(
            ts=self.ts,
            scope=self.scope,
            status=self.status,
            reasons=self.reasons,
            metrics=self.metrics,
            since=self.since,
            heartbeat=self.heartbeat,
        )

    def alert_event(self) -> Alert | None:
        """The alert this transition raises, if any (the risk service's and the backtest's)."""
        if self.alert is None:
            return None
        name, severity, message = self.alert
        return Alert(
            ts=self.ts,
            name=name,
            severity=severity,
            scope=self.scope,
            message=message,
            labels={"status": self.status},
        )


KILL_SWITCH_ALERT = "KillSwitchEngaged"
_UNCONFIRMED = (
    ". Cancel-all sent to its markets; NOT yet confirmed flat at the venue"
    " (KillSwitchFlat or KillSwitchCancelFailed follows per market)"
)
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
    cause: str = ""
    """Why the scope is HALTED, as a short label: the breach kinds, or ``manual``."""

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
        for kind in [k for k in self.held if judged_kind(k, j)]:
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
        self.cause = ",".join(sorted({b.kind for b in breaches}))
        text = f"risk halted {self.scope}: " + "; ".join(msgs) + _UNCONFIRMED
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
            self.reasons, self.since, self.cause = (reason,), at, "manual"
            return self._now(
                ts,
                alert=(
                    KILL_SWITCH_ALERT,
                    "critical",
                    f"{self.scope} halted: {reason}{_UNCONFIRMED}",
                ),
                cancel_all=True,
            )
        if cmd.command == "resume":
            asked = f"resume of {self.scope} by {who}" + (f": {cmd.reason}" if cmd.reason else "")
            if self.held:
                # The person resumed, the breach did not go away: halted again at once.
                holding = tuple(self.held.values())
                self.status, self.reasons, self.since = "HALTED", holding, at
                self.cause = ",".join(sorted(self.held))
                text = f"{asked} refused, still breached: " + "; ".join(holding) + _UNCONFIRMED
                return self._now(ts, alert=(KILL_SWITCH_ALERT, "critical", text), cancel_all=True)
            was, old = self.status, self.reasons
            self.status, self.reasons, self.since, self.cause = "ACTIVE", (), at, ""
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
            self.cause,
        )

    @classmethod
    def restore(cls, scope: str, snap: tuple[Any, ...]) -> ScopeMachine:
        status: Status = "HALTED" if snap[0] == "HALTED" else "ACTIVE"
        m = cls(scope, status, snap[1], snap[2])
        if len(snap) > 3:
            m.held = dict(snap[3])
            m.paused, m.paused_since, m.last_ts, m.beat = snap[4], snap[5], snap[6], snap[7]
            m.cause = snap[8] if len(snap) > 8 else ""
        return m
