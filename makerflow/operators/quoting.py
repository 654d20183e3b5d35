""":func:`quoting_op`: the Bytewax operator around :class:`~makerflow.operators.quoter.Quoter`,
one per market, keyed by ``venue:symbol``; :class:`MarketRouter` sends each event to the
markets it concerns and :class:`QuotingLogic` holds one market's quoter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.inventory import base_asset
from makerflow.operators.merge_logic import MergingLogic, fan_out_ends, input_by_type
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoter_types import QuoterInputError, QuoterSnapshot

# Re-exported: makerflow.backtest builds its quoter from here.
from makerflow.operators.quoter_types import QuoterOutput as QuoterOutput
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig
from makerflow.operators.quoting_models import NS
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DeadLetter,
    Fill,
    IndexPrice,
    InventoryCorrection,
    OrderEvent,
    OrderIntent,
    QuoteLadder,
    RiskState,
    Tick,
)
from makerflow.schemas.scopes import covers, scopes_of_market, validate_scope

# --- the Bytewax operator ----------------------------------------------------------------------

QuoterEvent = Tick | IndexPrice | RiskState | ControlCommand | OrderEvent | Fill | BalanceSnapshot
Routed = tuple[str, QuoterEvent]
"""``(venue:symbol, event)``: an event on its way to one market's quoter."""
Keyed = tuple[str, Routed]
"""A routed event keyed by its market, as the stateful step takes it."""


@dataclass(frozen=True, slots=True)
class Emission:
    """What one market's quoter did on one event; only made when it did something, so a
    tick that changes nothing costs the flow no further steps."""

    intents: tuple[OrderIntent, ...] = ()
    ladder: QuoteLadder | None = None
    dead: DeadLetter | None = None
    alerts: tuple[Alert, ...] = ()
    corrections: tuple[InventoryCorrection, ...] = ()


@dataclass(frozen=True)
class QuotingOut:
    """The outputs of :func:`quoting_op`."""

    intents: Stream[OrderIntent]
    """Place / cancel / cancel_all, in the order they must be executed per market."""
    ladders: Stream[QuoteLadder]
    """Each market's desired ladder when its orders change (for the ``quotes`` topic)."""
    dead_letters: Stream[DeadLetter]
    """Events the quoter could not use, with the reason."""
    alerts: Stream[Alert]
    """``CancelNotConfirmed`` (for the ``alerts`` topic); orphans are execution's."""
    corrections: Stream[InventoryCorrection]
    """Positions re-anchored to the venue's balances (``inventory.corrections``)."""


class MarketRouter:
    """Sends each event to the quoters of every configured market it concerns."""

    def __init__(self, config: QuotingConfig, step: str) -> None:
        self.config = config
        self.step = step
        self._markets = {m.key: m for m in config.markets}
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        by_base: dict[tuple[str, str, str], list[MarketConfig]] = {}
        for m in config.markets:
            by_base.setdefault((m.venue, m.account, base_asset(m.symbol)), []).append(m)
        # A balance re-anchors a market's position only where that market alone trades the
        # asset on its account: two markets sharing a base cannot split one balance.
        self._by_balance = {k: ms[0] for k, ms in by_base.items() if len(ms) == 1}

    def by_market(self, ev: Tick | OrderEvent | Fill) -> list[Keyed]:
        m = self._markets.get(ev.key)
        if m is None:
            return []
        if isinstance(ev, OrderEvent | Fill) and ev.account != m.account:
            return []
        return [(m.key, (m.key, ev))]

    def by_balance(self, ev: BalanceSnapshot) -> list[Keyed]:
        m = self._by_balance.get((ev.venue, ev.account, ev.asset))
        return [] if m is None else [(m.key, (m.key, ev))]

    def by_index(self, ev: IndexPrice) -> list[Keyed]:
        return [(m.key, (m.key, ev)) for m in self.config.markets if m.index_basket == ev.basket]

    def by_scope(self, ev: RiskState | ControlCommand) -> list[Keyed | DeadLetter]:
        try:
            validate_scope(ev.scope)
        except ValueError as exc:
            self._dead.inc()
            return [dead_letter(self.step, str(exc), encode(ev), ts=ev.ts, key=ev.scope.encode())]
        return [
            (m.key, (m.key, ev))
            for m in self.config.markets
            if covers(ev.scope, m.venue, m.symbol, m.account)
        ]


class QuotingLogic(StatefulLogic[Routed, Emission, QuoterSnapshot]):
    """Holds one market's :class:`Quoter`; times each tick's handling."""

    def __init__(
        self,
        config: QuotingConfig,
        step: str,
        resume: QuoterSnapshot | None,
        on_latency: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.step = step
        self.resume = resume
        self.quoter: Quoter | None = None
        self.on_latency = on_latency
        self._in = metrics.EVENTS_IN.labels(step=step)
        self._out = metrics.EVENTS_OUT.labels(step=step)
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        self._seen_returns = -1

    def _quoter(self, key: str) -> Quoter:
        if self.quoter is None:
            market = self.config.market(key)
            if market is None:
                raise KeyError(f"no configured market {key!r}")
            self.quoter = Quoter(
                market,
                self.config.params_for(market),
                id_namespace=self.config.id_namespace,
                cancel_on_start=self.config.cancel_on_start,
                snapshot=self.resume,
            )
        return self.quoter

    def on_item(self, value: Routed) -> tuple[Iterable[Emission], bool]:
        key, event = value
        quoter = self._quoter(key)
        self._in.inc()
        try:
            if isinstance(event, Tick):
                t0 = time.perf_counter_ns()
                out = quoter.on_tick(event)
                elapsed = time.perf_counter_ns() - t0
                metrics.TICK_TO_QUOTE_LATENCY.observe(elapsed / NS)
                if self.on_latency is not None:
                    self.on_latency(elapsed)
                if quoter.vol.returns != self._seen_returns:
                    self._seen_returns = quoter.vol.returns  # once per grid step
                    _export_estimates(quoter)
            else:
                out = quoter.on_event(event)
        except QuoterInputError as exc:
            self._dead.inc()
            dl = dead_letter(self.step, str(exc), encode(event), ts=event.ts, key=key.encode())
            return ((Emission(dead=dl),), StatefulLogic.RETAIN)
        if not out.intents and out.ladder is None and not out.alerts and not out.corrections:
            return ((), StatefulLogic.RETAIN)
        self._out.inc(len(out.intents) + (out.ladder is not None))
        emission = Emission(
            intents=out.intents,
            ladder=out.ladder,
            alerts=out.alerts,
            corrections=out.corrections,
        )
        return ((emission,), StatefulLogic.RETAIN)

    def snapshot(self) -> QuoterSnapshot:
        if self.quoter is None:
            assert self.resume is not None
            return self.resume
        return self.quoter.snapshot()


def _export_estimates(quoter: Quoter) -> None:
    key = quoter.key
    metrics.QUOTING_SIGMA.labels(market=key).set(quoter.sigma)
    fit = quoter.liquidity
    p = quoter.params
    a, kappa = (fit.a, fit.kappa) if fit is not None else (p.arrival_rate, p.kappa)
    metrics.QUOTING_INTENSITY.labels(market=key, param="a").set(a)
    metrics.QUOTING_INTENSITY.labels(market=key, param="kappa").set(kappa)


def _is_dead(x: object) -> TypeGuard[DeadLetter]:
    return isinstance(x, DeadLetter)


def _value(kv: tuple[str, Emission]) -> Emission:
    return kv[1]


def _intents(e: Emission) -> tuple[OrderIntent, ...]:
    return e.intents


def _ladders(e: Emission) -> tuple[QuoteLadder, ...]:
    return () if e.ladder is None else (e.ladder,)


def _dead(e: Emission) -> tuple[DeadLetter, ...]:
    return () if e.dead is None else (e.dead,)


def _alerts(e: Emission) -> tuple[Alert, ...]:
    return e.alerts


def _corrections(e: Emission) -> tuple[InventoryCorrection, ...]:
    return e.corrections


def _never(_: object) -> bool:
    return False


MERGE_INPUTS = ("orders", "fills", "balances", "control", "risk", "index", "ticks")
"""The quoter's inputs in a bounded replay's event-time merge; on equal times the order
state comes first, a tick last (it quotes on everything at its time). Risk states and
commands come per scope (each scope is its own Kafka key, so only each scope is in order):
one input per scope covering the market, ``"risk|global"``, ..."""
_INPUT_OF = input_by_type(
    {
        OrderEvent: "orders",
        Fill: "fills",
        BalanceSnapshot: "balances",
        ControlCommand: "control",
        RiskState: "risk",
        IndexPrice: "index",
        Tick: "ticks",
    },
    parts={RiskState: lambda ev: ev.scope, ControlCommand: lambda ev: ev.scope},
)


def merge_inputs(market: MarketConfig, inputs: tuple[str, ...]) -> tuple[str, ...]:
    """Every merge input of ``market``'s key, in tie order."""
    scopes = scopes_of_market(market.venue, market.symbol, market.account)
    out: list[str] = []
    for name in inputs:
        if name in ("risk", "control"):
            out.extend(f"{name}|{s}" for s in scopes)
        else:
            out.append(name)
    return tuple(out)


def _event(value: Routed) -> Any:
    return value[1]


def _input_of(value: Routed) -> str:
    return _INPUT_OF(value[1])


def _routed(key: str, e: Any) -> Keyed:
    return (key, (key, e))


def quoting_op(
    step_id: str,
    ticks: Stream[Tick],
    index: Stream[IndexPrice],
    risk: Stream[RiskState],
    order_events: Stream[OrderEvent],
    fills: Stream[Fill],
    control: Stream[ControlCommand],
    config: QuotingConfig,
    on_latency: Callable[[int], None] | None = None,
    balances: Stream[BalanceSnapshot] | None = None,
    *,
    bounded: bool = False,
) -> QuotingOut:
    """Quote every market of ``config``, keyed by ``venue:symbol``.

    Ticks, order events and fills go to their own market; an index price to every market
    whose ``index_basket`` it is; a risk state or control command to every market its scope
    covers (a malformed scope is a dead letter); a balance of a market's base asset to that
    market (when it is the only market trading that asset on its account), to re-anchor its
    inventory. ``balances`` is optional so callers without a balance feed keep working.
    ``on_latency`` (ns per tick, optional) lets a benchmark see each tick's handling time,
    which also goes to ``makerflow_tick_to_quote_latency_seconds``.

    ``bounded`` (a replay whose inputs end): each market's events reach its quoter in event
    time (:class:`~makerflow.operators.merge_logic.MergingLogic`), not in arrival order;
    the inputs' :class:`~makerflow.schemas.markers.InputEnded` markers, if they carry
    any, go to every configured market.
    """
    inputs: tuple[str, ...] = MERGE_INPUTS
    if balances is None:
        none: Any = op.filter(f"{step_id}_no_balances", ticks, _never)
        balances = none
        inputs = tuple(i for i in MERGE_INPUTS if i != "balances")
    assert balances is not None
    return _quoting_op(
        step_id,
        ticks,
        index,
        risk,
        order_events,
        fills,
        control,
        balances,
        config,
        on_latency,
        inputs if bounded else None,
    )


@operator
def _quoting_op(
    step_id: str,
    ticks: Stream[Tick],
    index: Stream[IndexPrice],
    risk: Stream[RiskState],
    order_events: Stream[OrderEvent],
    fills: Stream[Fill],
    control: Stream[ControlCommand],
    balances: Stream[BalanceSnapshot],
    config: QuotingConfig,
    on_latency: Callable[[int], None] | None,
    merge_inputs_of: tuple[str, ...] | None,
) -> QuotingOut:
    """:func:`quoting_op` with every input given; ``merge_inputs_of`` when bounded."""
    router = MarketRouter(config, step_id)
    keys = [m.key for m in config.markets]

    def route(name: str, fn: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
        # End markers (bounded replays) go to every configured market.
        return fan_out_ends(name, fn, lambda: keys, _routed)

    scoped = op.merge(
        "scoped",
        op.flat_map("route_risk", risk, route("risk", router.by_scope)),
        op.flat_map("route_control", control, route("control", router.by_scope)),
    )
    scope_split = op.branch("scope_errors", scoped, _is_dead)
    keyed: Stream[Keyed] = op.merge(
        "merge",
        op.flat_map("route_ticks", ticks, route("ticks", router.by_market)),
        op.flat_map("route_index", index, route("index", router.by_index)),
        op.flat_map("route_orders", order_events, route("orders", router.by_market)),
        op.flat_map("route_fills", fills, route("fills", router.by_market)),
        op.flat_map("route_balances", balances, route("balances", router.by_balance)),
        scope_split.falses,
    )

    def quoting_logic(resume: QuoterSnapshot | None) -> QuotingLogic:
        return QuotingLogic(config, step_id, resume, on_latency)

    def key_inputs(value: Routed) -> tuple[str, ...]:
        market = config.market(value[0])
        assert market is not None and inputs is not None
        return merge_inputs(market, inputs)

    inputs = merge_inputs_of

    def build(resume: Any) -> Any:
        # Live (no merge inputs): arrival order, see the README's Operations.
        return MergingLogic(
            key_inputs, _input_of, quoting_logic, resume, unwrap=_event, merge=inputs is not None
        )

    emitted = op.map("unkey", op.stateful("quote", keyed, build), _value)
    return QuotingOut(
        intents=op.flat_map("intents", emitted, _intents),
        ladders=op.flat_map("ladders", emitted, _ladders),
        dead_letters=op.merge(
            "dead_letters", scope_split.trues, op.flat_map("dead", emitted, _dead)
        ),
        alerts=op.flat_map("alerts", emitted, _alerts),
        corrections=op.flat_map("corrections", emitted, _corrections),
    )
