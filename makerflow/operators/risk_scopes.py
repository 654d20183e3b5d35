"""The per-scope stage of risk: the kill switch of every scope, in Bytewax.

Stages of :func:`makerflow.operators.risk.risk_op` send each scope :class:`Signal` s (breach
onsets and what holds now), :class:`Pause` s (stale data, an invalid book) and
:class:`Beat` s (event time moved on); commands come from the control topic. The pure
:class:`~makerflow.operators.kill_switch.ScopeMachine` decides; :class:`ScopeLogic` emits the
RiskState, the alerts and the cancel-all intents, and keeps the kill-switch gauges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import operator
from bytewax.operators import KeyedStream, StatefulLogic

from makerflow import metrics
from makerflow.operators.kill_switch import ScopeMachine, Transition
from makerflow.operators.risk_limits import Breach, BreachTracker, RiskConfig
from makerflow.schemas.events import Alert, ControlCommand, OrderIntent, split_market_key


@dataclass(frozen=True)
class Signal:
    """Breach onsets for a scope's machine, and what holds now among the kinds judged."""

    scope: str
    ts: int
    breaches: tuple[Breach, ...]
    metrics: dict[str, float]
    judged: frozenset[str] = frozenset()
    holding: tuple[Breach, ...] = ()


@dataclass(frozen=True)
class Pause:
    """A market's data went stale (``reasons``) or is fresh again (empty)."""

    scope: str
    ts: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Beat:
    """Event time reached ``ts`` for ``scope``: publish its state if a new period began."""

    scope: str
    ts: int


def signal(
    tracker: BreachTracker,
    scope: str,
    ts: int,
    breaches: tuple[Breach, ...],
    judged: Iterable[str],
    measured: dict[str, float],
) -> list[Signal]:
    """A Signal when the tracker's active set changed (an onset or a clear)."""
    j = frozenset(judged)
    onsets, changed = tracker.update(breaches, j)
    if not changed:
        return []
    return [Signal(scope, ts, onsets, measured, j, breaches)]


# --- per scope: the kill switch ----------------------------------------------------------------


ScopeIn = Signal | Pause | Beat | ControlCommand


class ScopeLogic(StatefulLogic[ScopeIn, Any, tuple[Any, ...]]):
    def __init__(self, scope: str, config: RiskConfig, resume: Any) -> None:
        self.config = config
        self.beat_ns = config.state_heartbeat_ms * 1_000_000
        self.machine = (
            ScopeMachine(scope) if resume is None else ScopeMachine.restore(scope, resume)
        )
        self._gauge = metrics.KILL_SWITCH_ENGAGED.labels(scope=scope)
        self._gauge.set(1 if self.machine.status == "HALTED" else 0)
        self._cause = ""
        self._show_cause()

    def _show_cause(self) -> None:
        """``makerflow_kill_switch_reason{scope, reason}`` reads 1 for the halt's cause only."""
        cause = self.machine.cause if self.machine.status == "HALTED" else ""
        if cause == self._cause:
            return
        if self._cause:
            with contextlib.suppress(KeyError):
                metrics.KILL_SWITCH_REASON.remove(self.machine.scope, self._cause)
        if cause:
            metrics.KILL_SWITCH_REASON.labels(scope=self.machine.scope, reason=cause).set(1)
        self._cause = cause

    def on_item(self, value: ScopeIn) -> tuple[Iterable[Any], bool]:
        out: list[Any] = []
        if isinstance(value, Signal):
            for b in value.breaches:
                metrics.RISK_LIMIT_BREACHES.labels(scope=value.scope, kind=b.kind).inc()
            self.machine.hold(value.judged, value.holding)
            t = self.machine.on_breach(value.ts, value.breaches, value.metrics)
        elif isinstance(value, Pause):
            t = self.machine.on_pause(value.ts, value.reasons)
        elif isinstance(value, Beat):
            t = self.machine.on_beat(value.ts, self.beat_ns)
        else:
            t = self.machine.on_command(value)
        if t is None:
            return out, StatefulLogic.RETAIN
        self._gauge.set(1 if t.status == "HALTED" else 0)
        self._show_cause()
        return out + self._emit(t), StatefulLogic.RETAIN

    def _emit(self, t: Transition) -> list[Any]:
        out: list[Any] = [t.risk_state()]
        alert = t.alert_event()
        if alert is not None:
            out.append(alert)
        out.extend(transition_cancels(self.config, t))
        return out

    def snapshot(self) -> tuple[Any, ...]:
        return self.machine.snapshot()


def audit(cmd: ControlCommand) -> Alert:
    who = cmd.issued_by or "?"
    return Alert(
        ts=cmd.ts,
        name="ControlCommand",
        severity="info",
        scope=cmd.scope,
        message=f"{cmd.command} {cmd.scope} by {who}" + (f": {cmd.reason}" if cmd.reason else ""),
        labels={
            "command": cmd.command,
            "issued_by": cmd.issued_by,
            "reason": cmd.reason,
            "nonce": cmd.nonce,
        },
    )


def cancel_all_intents(
    config: RiskConfig, scope: str, ts: int, reasons: tuple[str, ...], what: str = "kill switch"
) -> list[OrderIntent]:
    """``cancel_all`` for every configured market a halt of ``scope`` stops (and the market
    itself for a ``market:`` scope that is not configured)."""
    markets = [(m.venue, m.symbol, m.account) for m in config.markets_in_scope(scope)]
    kind, _, rest = scope.partition(":")
    if kind == "market" and not markets:
        venue, symbol = split_market_key(rest)
        markets = [(venue, symbol, "main")]
    why = f"{what} {scope}: " + "; ".join(reasons)
    return [
        OrderIntent(ts=ts, venue=v, symbol=s, account=a, action="cancel_all", reason=why)
        for v, s, a in markets
    ]


def transition_cancels(config: RiskConfig, t: Transition) -> list[OrderIntent]:
    """The ``cancel_all`` intents a transition asks for (none unless ``t.cancel_all``)."""
    if not t.cancel_all:
        return []
    what = "pause" if t.status == "PAUSED" else "kill switch"
    return cancel_all_intents(config, t.scope, t.ts, t.reasons, what)


# --- routing helpers ------------------------------------------------------------------------


class WithKey(StatefulLogic[tuple[str, Any], Any, tuple[str, Any]]):
    """Bytewax does not pass the key to a StatefulLogic builder; this builds the inner logic
    from the first item's key, and snapshots the key along with the inner state."""

    def __init__(self, build: Callable[[str, Any], StatefulLogic[Any, Any, Any]], resume: Any):
        self.build = build
        self.key: str | None = None
        self.inner: StatefulLogic[Any, Any, Any] | None = None
        if resume is not None:
            self.key = resume[0]
            self.inner = build(resume[0], resume[1])

    def on_item(self, value: tuple[str, Any]) -> tuple[Iterable[Any], bool]:
        if self.inner is None:
            self.key = value[0]
            self.inner = self.build(value[0], None)
        return self.inner.on_item(value[1])

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if self.inner is None:
            return (), StatefulLogic.RETAIN
        return self.inner.on_notify()

    def notify_at(self) -> Any:
        return None if self.inner is None else self.inner.notify_at()

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        # A bounded replay's merge releases what it still holds here.
        if self.inner is None:
            return (), StatefulLogic.RETAIN
        return self.inner.on_eof()

    def snapshot(self) -> tuple[str, Any]:
        assert self.inner is not None and self.key is not None
        return self.key, self.inner.snapshot()


@operator
def keyed_stateful(
    step_id: str,
    up: KeyedStream[Any],
    build: Callable[[str, Any], StatefulLogic[Any, Any, Any]],
) -> KeyedStream[Any]:
    """``op.stateful`` whose builder gets the key: ``build(key, resume_state)``."""
    with_key = op.map("with_key", up, lambda kv: (kv[0], kv))
    return op.stateful("logic", with_key, lambda resume: WithKey(build, resume))
