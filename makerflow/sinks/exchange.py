"""The exchange sink: executes order intents with ccxt (async), never placing an order twice,
never stalling the worker, and checking itself against the venue.

:func:`execute_intents` is the Bytewax operator. Per market it keeps the one order state
(:class:`~makerflow.operators.order_state.OrderState`), fed with the intents it executes,
the events they produce and the private stream's updates; the fat-finger guards read it. It
hands intents to an :class:`~makerflow.sinks.exchange_runner.ExchangeRunner` (the ccxt client
on an asyncio loop in a background thread, one per worker) and emits results as they finish:
it never waits on the venue, so a slow venue delays only its own market's intents.

Periodically (and when a market is first seen) it reconciles with the venue
(:mod:`makerflow.operators.mass_status`): orphans are cancelled or adopted, orders the state
believes live that the venue does not list are looked up, fills never seen are emitted.

The executor itself (retries, lost answers, time-to-live) is
:mod:`makerflow.sinks.exchange_executor`; the venue layer is :mod:`makerflow.venue`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from makerflow import metrics
from makerflow.operators.mass_status import plan_sweep
from makerflow.operators.order_state import Order, OrderState, OrderStateSnapshot
from makerflow.operators.replayed_intents import triage
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    Fill,
    OrderEvent,
    OrderIntent,
)
from makerflow.sinks.exchange_config import ExchangeSinkConfig
from makerflow.sinks.exchange_executor import ExchangeExecutor, Flatten
from makerflow.sinks.exchange_lost import Unknown
from makerflow.sinks.exchange_start import MarketStart, MarketStarts
from makerflow.sinks.exchange_runner import (
    ExchangeRunner,
    JobDone,
    Resolved,
    SweepFailed,
    Swept,
)
from makerflow.sinks.venue_status import VenueStatus
from makerflow.venue import Credentials, classify_error, make_client, order_event_from_ccxt

__all__ = [
    "Credentials",
    "ExchangeExecutor",
    "ExchangeRunner",
    "ExchangeSinkConfig",
    "Executions",
    "classify_error",
    "execute_intents",
    "make_ccxt_client",
    "order_event_from_ccxt",
]

log = logging.getLogger(__name__)


def make_ccxt_client(config: ExchangeSinkConfig, credentials: Credentials | None = None) -> Any:
    """The async ccxt client the config names (see :func:`makerflow.venue.make_client`)."""
    return make_client(config.client_spec(), credentials or Credentials.load(config))


class _LazyRunner:
    """One runner per worker thread, created on first use so building the flow opens
    nothing, and closed when the last market of that worker reached the end of its input
    (other workers, cluster_main threads, still trade)."""

    def __init__(
        self,
        config: ExchangeSinkConfig,
        credentials: Credentials | None,
        clock: Callable[[], int],
        flatten: Flatten | None,
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._clock = clock
        self._flatten = flatten
        self.started_ns = clock()
        """When the flow was built (its run's start): older intents come from a run before."""
        self._runners: dict[int, ExchangeRunner] = {}
        self._users: dict[int, set[int]] = {}
        self._lock = threading.Lock()

    def get(self, user: object) -> ExchangeRunner:
        me = threading.get_ident()
        with self._lock:
            self._users.setdefault(me, set()).add(id(user))
            runner = self._runners.get(me)
            if runner is None:
                creds = self._credentials
                if creds is None and not self._config.dry_run:
                    creds = Credentials.load(self._config)
                executor = ExchangeExecutor(
                    self._config,
                    credentials=creds,
                    clock=self._clock,
                    flatten=self._flatten,
                    started_ns=self.started_ns,
                )
                runner = self._runners[me] = ExchangeRunner(executor)
            return runner

    def release(self, user: object) -> None:
        me = threading.get_ident()
        with self._lock:
            users = self._users.get(me, set())
            users.discard(id(user))
            runner = self._runners.pop(me, None) if not users else None
        if runner is not None:
            runner.close()


_Item = OrderIntent | OrderEvent | Fill | MarketStart
_Out = OrderEvent | Fill | BalanceSnapshot | Alert


class _ExecuteLogic:
    """Per market: the order state, the intents in flight, and when to sweep next."""

    def __init__(
        self,
        step: str,
        config: ExchangeSinkConfig,
        lazy: _LazyRunner,
        clock: Callable[[], int],
        resume: OrderStateSnapshot | None,
    ) -> None:
        self.step = step
        self.config = config
        self.lazy = lazy
        self.clock = clock
        # A resume state of the older format (a tuple of open ids) is dropped: the first
        # sweep re-learns the venue's open orders.
        snap = resume if isinstance(resume, OrderStateSnapshot) else None
        self.state = OrderState(prefix=config.client_id_prefix, snapshot=snap)
        self.restored = snap is not None
        """Resumed from a recovery snapshot: the intents from before this run that follow
        are the replayed epoch's (and those made while the service was down)."""
        self.key = ""
        self.symbol = ""
        self.in_flight: dict[str, int] = {}
        self.started_ns = lazy.started_ns
        self.next_sweep_ns: int | None = clock() if config.sweep_interval_s else None
        self.sweeping = False
        self.answered: set[str] = set()
        """Client ids whose intents were answered while a sweep was out: its listing may
        predate those answers."""
        self.runner: ExchangeRunner | None = None
        # Until the first mass status is in, nothing is sent: the intents are held, so the
        # step knows what the venue holds (what the run before sent) before it sends.
        self.syncing = self.next_sweep_ns is not None and not config.dry_run
        self.held: list[OrderIntent] = []
        self.start_status: VenueStatus | None = None
        self.start_failed = False
        self.last_intent_ns = clock()
        self.saw_fresh = False
        self.listed_open: frozenset[str] = frozenset()
        self.listed_traded: frozenset[str] = frozenset()

    def _runner(self) -> ExchangeRunner:
        if self.runner is None:
            self.runner = self.lazy.get(self)
        return self.runner

    # --- inputs ----------------------------------------------------------------------------

    def on_batch(self, values: list[_Item]) -> list[_Out]:
        metrics.EVENTS_IN.labels(step=self.step).inc(len(values))
        if not self.key:
            self.key, self.symbol = values[0].key, values[0].symbol
            if self.next_sweep_ns is not None:
                # Mass status as soon as the market is seen (at start, or its first item):
                # orphans left by an earlier run, orders and fills missed while down.
                self._sweep()
        out: list[_Out] = []
        intents: list[OrderIntent] = []
        n_open = len(self.state.open_orders(self.key))
        for v in values:
            if isinstance(v, OrderIntent):
                if self._redelivered(v):
                    continue
                self.state.on_intent(v)
                intents.append(v)
            elif isinstance(v, OrderEvent):
                self.state.on_order_event(v)
            elif isinstance(v, Fill):
                self.state.on_fill(v)
        if intents and self.syncing:
            self.held += intents
            self.last_intent_ns = self.clock()
            self.saw_fresh = self.saw_fresh or any(i.ts >= self.started_ns for i in intents)
        elif intents:
            out += self._submit(intents, n_open)
        out += self._harvest()
        out += self._end_sync()
        return out

    def _submit(self, intents: list[OrderIntent], n_open: int) -> list[_Out]:
        """Send intents on, those from before this run sorted first (see
        :mod:`makerflow.operators.replayed_intents`): answers for those not sent."""
        t = triage(
            intents,
            self.state,
            started_ns=self.started_ns,
            now_ns=self.clock(),
            ttl_ms=self.config.intent_ttl_ms,
            restored=self.restored,
            listed_open=self.listed_open,
            listed_traded=self.listed_traded,
        )
        for ev in t.expired:
            metrics.ORDER_REJECTS.labels(venue=ev.venue, reason="expired_intent").inc()
        if t.moot:
            log.info(
                "%s: %d intent(s) from before this run not sent (the venue lists the place, "
                "or the order is closed already)",
                self.key,
                len(t.moot),
            )
        if t.send:
            for i in t.send:
                if i.client_order_id:
                    self.in_flight[i.client_order_id] = self.in_flight.get(i.client_order_id, 0) + 1
            self._runner().submit(self.key, list(t.send), n_open)
        return list(t.expired)

    def _end_sync(self, force: bool = False) -> list[_Out]:
        """Once the start's mass status is in and the intents from before this run have all
        arrived (one of this run came, or none came for ``start_settle_ms``; at the end of
        the input in any case), apply the listing and release the held intents."""
        if not self.syncing or (self.start_status is None and not self.start_failed):
            return []
        settled = self.clock() - self.last_intent_ns >= self.config.start_settle_ms * 1_000_000
        if not (force or self.saw_fresh or settled):
            return []
        self.syncing = False
        out: list[_Out] = []
        status = self.start_status
        if status is not None:
            self.listed_open = frozenset(e.client_order_id for e in status.open_orders)
            self.listed_traded = frozenset(
                f.client_order_id for f in status.fills if f.client_order_id
            )
            held_ids = frozenset(i.client_order_id for i in self.held if i.client_order_id)
            out += self._reconcile(status, held_ids)
        held, self.held = self.held, []
        if held:
            # The guard counts the orders open before the held ones, as if sent on arrival.
            mine = {i.client_order_id for i in held if i.action == "place"}
            n_open = sum(o.client_order_id not in mine for o in self.state.open_orders(self.key))
            out += self._submit(held, n_open)
        return out

    def _redelivered(self, intent: OrderIntent) -> bool:
        """A place the state already holds as sent (at-least-once delivery, a replayed
        topic): never sent again, since a venue that frees client ids of closed orders
        would place it twice."""
        if intent.action != "place" or not intent.client_order_id:
            return False
        o = self.state.get(intent.client_order_id)
        if o is None or not o.sent:
            return False
        metrics.ORDER_REJECTS.labels(venue=intent.venue, reason="duplicate_intent").inc()
        log.info("place %s was already sent (%s); not sending again", o.client_order_id, o.state)
        return True

    def on_notify(self) -> list[_Out]:
        out = self._harvest()
        out += self._end_sync()
        now = self.clock()
        if self.next_sweep_ns is not None and now >= self.next_sweep_ns and not self.sweeping:
            self._sweep()
        return out

    def _sweep(self) -> None:
        if not self.symbol or self.config.dry_run:
            return
        self.sweeping = True
        self.answered.clear()
        assert self.config.sweep_interval_s is not None
        self.next_sweep_ns = self.clock() + int(self.config.sweep_interval_s * 1e9)
        self._runner().submit_sweep(self.key, self.symbol)

    def notify_at(self) -> datetime | None:
        runner = self.runner
        now = self.clock()
        if self.syncing or (runner is not None and (runner.busy(self.key) or self.in_flight)):
            wake = now + self.config.harvest_interval_ms * 1_000_000
        elif runner is not None and runner.resolving(self.key):
            wake = now + int(self.config.resolve_interval_s / 2 * 1e9)
        elif self.next_sweep_ns is not None:
            wake = max(self.next_sweep_ns, now)
        else:
            return None
        return datetime.fromtimestamp(wake / 1e9, tz=UTC)

    def on_eof(self) -> list[_Out]:
        out: list[_Out] = []
        runner = self.runner
        if runner is None:
            return out
        # What finished work sets off (a sweep's cancels and look-ups) is work too.
        deadline = time.monotonic() + self.config.drain_timeout_s
        while True:
            runner.drain(self.key, max(deadline - time.monotonic(), 0.0))
            out += self._harvest()
            out += self._end_sync(force=True)
            idle = not runner.busy(self.key) and not runner.resolving(self.key)
            if idle or time.monotonic() >= deadline:
                break
        self.lazy.release(self)
        self.runner = None
        return out

    def snapshot(self) -> OrderStateSnapshot:
        return self.state.snapshot()

    # --- results ---------------------------------------------------------------------------

    def _harvest(self) -> list[_Out]:
        runner = self.runner
        if runner is None:
            return []
        out: list[_Out] = []
        for done in runner.take(self.key):
            if isinstance(done, JobDone):
                if self.sweeping:
                    self.answered.update(done.cids)
                for cid in done.cids:
                    n = self.in_flight.get(cid, 0) - 1
                    if n > 0:
                        self.in_flight[cid] = n
                    else:
                        self.in_flight.pop(cid, None)
                out += self._events(done.events)
            elif isinstance(done, Resolved):
                out += self._events(done.events)
            elif isinstance(done, Swept):
                self.sweeping = False
                if self.syncing:
                    self.start_status = done.status  # applied with the held intents
                else:
                    out += self._reconcile(done.status)
            elif isinstance(done, SweepFailed):
                self.sweeping = False
                self.start_failed = self.start_failed or self.syncing
                metrics.VENUE_SWEEPS.labels(venue=self.config.venue, outcome="failed").inc()
                log.warning("reconciliation of %s with the venue failed: %s", self.key, done.error)
        metrics.EVENTS_OUT.labels(step=self.step).inc(len(out))
        return out

    def _events(self, events: Iterable[OrderEvent]) -> list[_Out]:
        out: list[_Out] = []
        for ev in events:
            self.state.on_order_event(ev)
            out.append(ev)
        return out

    def _reconcile(self, status: VenueStatus, held: frozenset[str] = frozenset()) -> list[_Out]:
        # Orders with an intent in flight, or answered since the listing was asked for,
        # hear from their intents: the listing may be older than those answers. The held
        # intents' orders are not looked up here (their places are, or are sent, next), but
        # the listing is their news: nothing of theirs was sent since it was taken.
        busy = frozenset(self.in_flight) | frozenset(self.answered)
        plan = plan_sweep(
            self.state,
            market=self.key,
            open_orders=status.open_orders,
            fills=status.fills,
            ts=status.ts,
            started_ts=self.started_ns,
            in_flight=busy | held,
            policy=self.config.orphans,
        )
        out: list[_Out] = []
        for ev in plan.apply:
            # An order with an intent in flight hears from that intent (the listing may be
            # older than its answer).
            if ev.client_order_id in busy:
                continue
            before = self.state.get(ev.client_order_id)
            t = self.state.on_order_event(ev)
            # Emit what the venue says that we did not know: a new state or more filled
            # (a listing restates every open order; its timestamps alone are no news).
            if t is not None and (
                before is None or t.order.state != before.state or t.order.filled > before.filled
            ):
                out.append(ev)
        for f in plan.fills:
            if self.state.on_fill(f) is not None:
                out.append(f)
        for cid in plan.adopt:
            self.state.adopt(cid)
        out += plan.alerts
        runner = self._runner()
        if plan.cancel:
            for c in plan.cancel:
                self.state.on_intent(c)
            runner.submit(self.key, list(plan.cancel), 0)
        if plan.look_up:
            runner.submit_lookups(self.key, [_unknown_of(o, status.ts) for o in plan.look_up])
        out += status.balances
        metrics.VENUE_SWEEPS.labels(
            venue=self.config.venue,
            outcome="orphans" if plan.cancel or plan.adopt else "ok",
        ).inc()
        return out


def _unknown_of(o: Order, now: int) -> Unknown:
    intent = OrderIntent(
        ts=o.placed_ts if o.placed_ts is not None else o.last_ts,
        venue=o.venue,
        symbol=o.symbol,
        account=o.account,
        action="place",
        client_order_id=o.client_order_id,
        side=o.side,
        price=o.price,
        qty=o.qty,
    )
    # The receive window counts from now: the venue's silence is only conclusive after it.
    return Unknown(intent, o.price, o.qty or 0.0, sent_ns=now, next_ns=now)


class _BatchLogic(op.StatefulBatchLogic[_Item, _Out, OrderStateSnapshot]):
    """The Bytewax face of :class:`_ExecuteLogic`."""

    def __init__(self, logic: _ExecuteLogic) -> None:
        self.logic = logic

    def on_batch(self, values: list[_Item]) -> tuple[Iterable[_Out], bool]:
        return self.logic.on_batch(values), False

    def on_notify(self) -> tuple[Iterable[_Out], bool]:
        return self.logic.on_notify(), False

    def on_eof(self) -> tuple[Iterable[_Out], bool]:
        return self.logic.on_eof(), False

    def notify_at(self) -> datetime | None:
        return self.logic.notify_at()

    def snapshot(self) -> OrderStateSnapshot:
        return self.logic.snapshot()


@dataclass(frozen=True)
class Executions:
    """What execution produced: order events (acks, fills known at once, cancels, unknown
    outcomes and their resolutions, local and venue rejects with their reason, and the
    venue's word on orders the sweep listed), fills the sweep found that were never seen,
    the sweep's balances, and alerts (orphans)."""

    orders: Stream[OrderEvent]
    fills: Stream[Fill]
    balances: Stream[BalanceSnapshot]
    alerts: Stream[Alert]


@operator
def execute_intents(
    step_id: str,
    intents: Stream[OrderIntent],
    config: ExchangeSinkConfig,
    *,
    updates: Stream[OrderEvent] | None = None,
    fill_updates: Stream[Fill] | None = None,
    credentials: Credentials | None = None,
    clock: Callable[[], int] = time.time_ns,
    flatten: Flatten | None = None,
    markets: tuple[str, ...] = (),
) -> Executions:
    """Execute order intents on the exchange; see the module docstring and
    :class:`Executions`.

    Keyed by market, so each market's intents run in order on one worker. ``updates`` and
    ``fill_updates`` (the private stream's order events and fills) keep the order state
    exact when the venue fills or closes orders; without them it follows this step's own
    events and the sweeps. ``clock`` (the wall clock, ns; Bytewax wakes the step on the real
    one) is read for intents' time-to-live, sweeps and harvest timers. ``flatten`` replaces
    the confirmed cancel-all used for ``cancel_all`` intents (the kill switch's
    :func:`~makerflow.sinks.flatten.flatten`, by default). ``markets`` (``venue:symbol``)
    start at once, with their mass status, whether or not an item of theirs arrives.
    """
    lazy = _LazyRunner(config, credentials, clock, flatten)
    merged: Stream[Any] = intents
    if updates is not None:
        merged = op.merge("merge_updates", merged, updates)
    if fill_updates is not None:
        merged = op.merge("merge_fills", merged, fill_updates)
    if markets:
        starts = op.input("market_starts", intents.flow(), MarketStarts(markets))
        merged = op.merge("merge_starts", merged, starts)
    keyed = op.key_on("key_market", merged, lambda x: x.key)
    out = op.stateful_batch(
        "execute",
        keyed,
        lambda resume: _BatchLogic(_ExecuteLogic(step_id, config, lazy, clock, resume)),
    )
    values = op.key_rm("unkey", out)
    orders_b = op.branch("orders", values, lambda e: isinstance(e, OrderEvent))
    fills_b = op.branch("fills", orders_b.falses, lambda e: isinstance(e, Fill))
    bal_b = op.branch("balances", fills_b.falses, lambda e: isinstance(e, BalanceSnapshot))
    return Executions(
        orders=orders_b.trues,  # type: ignore[arg-type]
        fills=fills_b.trues,  # type: ignore[arg-type]
        balances=bal_b.trues,  # type: ignore[arg-type]
        alerts=bal_b.falses,  # type: ignore[arg-type]
    )
