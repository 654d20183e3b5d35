"""The risk gate: risk in the command path, in front of execution.

Execution keeps the latest :class:`~makerflow.schemas.events.RiskState` of every scope that
covers a market (``global``, ``account:<name>``, ``asset:<base>``, ``asset:<quote>``,
``market:<venue>:<symbol>``) and judges every intent before it can reach the exchange:

- ``cancel`` and ``cancel_all`` always pass: taking risk off is never refused;
- a ``place`` passes only when every covering scope's state is known, fresh and ACTIVE.
  Fresh is judged in event time: ``intent.ts - state.ts <= max_state_age_ms``, so a replay
  at any speed gets the same answers. Risk repeats every state each heartbeat period, so a
  state that stopped coming means risk is gone, and the gate fails closed;
- a ``reduce_only`` place passes a HALTED or PAUSED scope when ``reduce_only_passes`` (it
  still needs fresh states: without them nobody knows what the scope is doing).

:class:`RiskGate` is pure (no I/O, no clock); :func:`risk_gate` is the Bytewax operator:
it keys intents by market, fans each state out to the markets its scope covers, and turns
refusals into rejected OrderEvents with the reason (and a counter). The intents topic's
:class:`~makerflow.schemas.markers.CaughtUp` markers go through in line with the intents, a
held place's too: the execution start takes one as "every intent before it has arrived".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from makerflow import metrics
from makerflow.operators.rejections import rejected_event
from makerflow.schemas.config import Config
from makerflow.schemas.events import (
    OrderEvent,
    OrderIntent,
    RiskState,
    split_market_key,
)
from makerflow.schemas.markers import CaughtUp
from makerflow.schemas.scopes import covers, market_key_scope, scopes_of_market

NS_PER_MS = 1_000_000

Why = Literal["halted", "paused", "stale", "unknown"]

_RANK = {"ACTIVE": 0, "PAUSED": 1, "HALTED": 2}


class GateConfig(Config, frozen=True, kw_only=True):
    """The risk gate of the execution service (``[execution.gate]``, ``[all_in_one.gate]``).

    ``markets`` (``venue:symbol``) are the markets the states of wide scopes (``global``,
    ``account:``, ``asset:``) are fanned out to; an intent for any other market hears only
    its own ``market:`` scope and so is refused for want of the others (fail closed).
    """

    enabled: bool = True
    max_state_age_ms: int = 5_000
    """A state older than this (intent event time minus state event time) is not trusted;
    keep it a few times risk's ``state_heartbeat_ms``."""
    reduce_only_passes: bool = True
    markets: tuple[str, ...] = ()
    hold_ms: int = 2_000
    """A place that arrives before risk was ever heard for its market (a service start, the
    topics read in any order) waits this long (wall clock) for the first states before it is
    refused; 0 refuses at once. Only "never heard" waits: halted, paused or stale refuse now."""

    def __post_init__(self) -> None:
        if self.max_state_age_ms <= 0:
            raise ValueError(f"max_state_age_ms must be positive, got {self.max_state_age_ms}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gate refused a place."""

    scope: str
    why: Why
    message: str


def newer(a: RiskState, b: RiskState) -> bool:
    """Whether ``a`` supersedes ``b`` (same scope): later event time; at the same time the
    more restrictive status, so duplicates and reorderings end in the same state."""
    return (a.ts, _RANK[a.status]) > (b.ts, _RANK[b.status])


class RiskGate:
    """The states one execution partition has heard, and the verdict on each intent."""

    def __init__(self, config: GateConfig, states: Iterable[RiskState] = ()) -> None:
        self.config = config
        self.states: dict[str, RiskState] = {}
        for s in states:
            self.on_state(s)

    def on_state(self, state: RiskState) -> None:
        """Keep ``state`` if it supersedes what is known of its scope (idempotent)."""
        old = self.states.get(state.scope)
        if old is None or newer(state, old):
            self.states[state.scope] = state

    def check(self, intent: OrderIntent) -> Refusal | None:
        """``None`` when ``intent`` may go to the exchange, else why not."""
        if intent.action != "place" or not self.config.enabled:
            return None
        max_age = self.config.max_state_age_ms * NS_PER_MS
        try:
            scopes = scopes_of_market(intent.venue, intent.symbol, intent.account)
        except ValueError as exc:
            return Refusal(market_key_scope(intent.key), "unknown", str(exc))
        # Most restrictive first: a halt is what a person must hear about, not staleness.
        found: list[Refusal] = []
        for scope in scopes:
            s = self.states.get(scope)
            if s is None:
                found.append(
                    Refusal(scope, "unknown", f"no risk state heard for {scope} (fail closed)")
                )
                continue
            age = intent.ts - s.ts
            if s.status != "ACTIVE" and not (intent.reduce_only and self.config.reduce_only_passes):
                why: Why = "halted" if s.status == "HALTED" else "paused"
                detail = "; ".join(s.reasons) or "no reason given"
                found.append(Refusal(scope, why, f"{scope} is {s.status}: {detail}"))
            elif age > max_age:
                found.append(
                    Refusal(
                        scope,
                        "stale",
                        f"risk state of {scope} is {age / 1e9:.3f}s older than the intent"
                        f" (max {max_age / 1e9:g}s): risk is not heard (fail closed)",
                    )
                )
        if not found:
            return None
        order = {"halted": 0, "paused": 1, "stale": 2, "unknown": 3}
        return min(found, key=lambda r: order[r.why])

    def snapshot(self) -> tuple[RiskState, ...]:
        return tuple(self.states.values())


def rejected(intent: OrderIntent, refusal: Refusal) -> OrderEvent:
    """The rejected OrderEvent execution reports for a refused intent."""
    return rejected_event(intent, f"risk_gate:{refusal.why}: {refusal.message}")


def state_targets(state: RiskState, markets: Iterable[str]) -> list[str]:
    """The market keys (``venue:symbol``) a state of ``state.scope`` must reach."""
    kind, _, rest = state.scope.partition(":")
    if kind == "market":
        return [rest]
    out = []
    for key in markets:
        venue, symbol = split_market_key(key)
        if kind == "account" or covers(state.scope, venue, symbol):
            out.append(key)
    return out


# --- the Bytewax operator -------------------------------------------------------------------


@dataclass(frozen=True)
class GateOut:
    passed: Stream[OrderIntent | CaughtUp]
    """Intents for the exchange sink, in their order per market (and the intents topic's
    markers, if it was read with them)."""
    rejected: Stream[OrderEvent]
    """Refused places, as rejected OrderEvents (``reason`` starts with ``risk_gate:``)."""


def _refuse(intent: OrderIntent, refusal: Refusal) -> OrderEvent:
    metrics.RISK_GATE_REJECTS.labels(market=intent.key, why=refusal.why).inc()
    metrics.ORDER_REJECTS.labels(venue=intent.venue, reason="risk_gate").inc()
    return rejected(intent, refusal)


class _GateLogic(op.StatefulBatchLogic[Any, Any, tuple[Any, ...]]):
    """One market's gate, and the places waiting for risk's first word (``hold_ms``)."""

    def __init__(
        self,
        config: GateConfig,
        clock: Callable[[], datetime],
        resume: tuple[Any, ...] | None,
    ):
        self.config = config
        self.clock = clock
        states, held = resume or ((), ())
        self.gate = RiskGate(config, states)
        self.held: list[OrderIntent] = list(held)
        self.until: datetime | None = None
        if self.held:  # resumed while places waited: they wait once more, then are judged
            self.until = clock() + timedelta(milliseconds=config.hold_ms)

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        # States first: what risk says now, heard together with an intent, judges it (a halt
        # that arrives beside a place refuses it).
        for v in values:
            if isinstance(v, RiskState):
                self.gate.on_state(v)
        out: list[Any] = []
        queue = [*self.held, *(v for v in values if not isinstance(v, RiskState))]
        self.held = []
        for intent in queue:
            if self.held:
                # Waiting for risk's first word: everything after keeps its place in line.
                self.held.append(intent)
                continue
            if type(intent) is CaughtUp:
                out.append(intent)
                continue
            refusal = self.gate.check(intent)
            if refusal is None:
                out.append(intent)
            elif refusal.why == "unknown" and self.config.hold_ms > 0:
                self.held.append(intent)
            else:
                out.append(_refuse(intent, refusal))
        if self.held and self.until is None:
            self.until = self.clock() + timedelta(milliseconds=self.config.hold_ms)
        elif not self.held:
            self.until = None
        return out, False

    def notify_at(self) -> datetime | None:
        return self.until

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        # Risk was not heard in time: the places are refused, the cancels go.
        out: list[Any] = []
        for h in self.held:
            if type(h) is CaughtUp:
                out.append(h)
                continue
            refusal = self.gate.check(h)
            if refusal is None:
                out.append(h)
            else:
                out.append(_refuse(h, refusal))
        self.held, self.until = [], None
        return out, False

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        # The intents ended (a bounded run): what still waits is judged now, never dropped.
        return self.on_notify()

    def snapshot(self) -> tuple[Any, ...]:
        # A marker speaks of this run's reading only: a resumed run gets its own.
        return self.gate.snapshot(), tuple(h for h in self.held if type(h) is not CaughtUp)


@operator
def risk_gate(
    step_id: str,
    intents: Stream[OrderIntent],
    states: Stream[RiskState],
    config: GateConfig,
    clock: Callable[[], datetime] | None = None,
) -> GateOut:
    """Refuse places that add exposure where risk says no (see the module's doc).

    ``clock`` (wall time, for liveness only) bounds how long a place waits for risk's first
    word (``hold_ms``); verdicts never depend on it."""
    now = clock or (lambda: datetime.now(UTC))
    keyed = op.merge(
        "merge",
        op.key_on("key_intents", intents, lambda i: i.key),
        op.flat_map(
            "fan_states",
            states,
            lambda s: [(k, s) for k in state_targets(s, config.markets)],
        ),
    )
    judged = op.key_rm(
        "unkey",
        op.stateful_batch("gate", keyed, lambda resume: _GateLogic(config, now, resume)),
    )
    split = op.branch("verdict", judged, lambda x: not isinstance(x, OrderEvent))
    return GateOut(passed=split.trues, rejected=split.falses)
