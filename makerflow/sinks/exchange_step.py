"""The execution step of one market: the one order state, the intents in flight, the start
and the periodic reconciliation with the venue, as the logic of a Bytewax ``stateful_batch``.

At start nothing is sent until the venue's mass status is in: intents are held (and applied
to the order state), then the listing is applied, then the intents from before this run are
sorted (:mod:`makerflow.operators.replayed_intents`): the venue's word for places it already
holds, a look-up by client id for those it may have closed, nothing for stale ones. So after a
restart, with or without a recovery snapshot, no place of the run before is sent again.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import bytewax.operators as op

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
    split_market_key,
)
from makerflow.schemas.markers import CaughtUp
from makerflow.sinks.exchange_config import ExchangeSinkConfig
from makerflow.sinks.exchange_executor import ExchangeExecutor, Flatten
from makerflow.sinks.exchange_lost import Unknown
from makerflow.sinks.exchange_runner import (
    ExchangeRunner,
    JobDone,
    Resolved,
    SweepFailed,
    Swept,
)
from makerflow.sinks.exchange_start import IntentsArrived, MarketStart
from makerflow.sinks.venue_status import VenueStatus
from makerflow.venue import Credentials

log = logging.getLogger(__name__)

LIVE: weakref.WeakSet[LazyRunner] = weakref.WeakSet()
"""Every exchange sink of this process, for :mod:`makerflow.sinks.exchange_shutdown`."""


class LazyRunner:
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
        LIVE.add(self)

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

    def close_all(self, timeout_s: float) -> int:
        """Close every worker's runner now (a shutdown); returns how many were open."""
        # A signal handler runs on the worker's thread, which may hold the lock right now.
        locked = self._lock.acquire(timeout=timeout_s)
        try:
            runners = list(self._runners.values())
            self._runners.clear()
            self._users.clear()
        finally:
            if locked:
                self._lock.release()
        for runner in runners:
            try:
                runner.close(timeout_s)
            except Exception:  # a shutdown goes on whatever one client does
                log.exception("closing an exchange client failed")
        return len(runners)

    def release(self, user: object) -> None:
        me = threading.get_ident()
        with self._lock:
            users = self._users.get(me, set())
            users.discard(id(user))
            runner = self._runners.pop(me, None) if not users else None
        if runner is not None:
            runner.close()


Item = OrderIntent | OrderEvent | Fill | MarketStart | CaughtUp
Out = OrderEvent | Fill | BalanceSnapshot | Alert


class ExecuteLogic:
    """Per market: the order state, the intents in flight, and when to sweep next."""

    def __init__(
        self,
        step: str,
        config: ExchangeSinkConfig,
        lazy: LazyRunner,
        clock: Callable[[], int],
        resume: OrderStateSnapshot | None,
        marked: frozenset[str] = frozenset(),
    ) -> None:
        """``marked``: the markets whose intents come with their topic's :class:`CaughtUp`
        markers, one from each partition; their start waits for those, not for a pause."""
        self.marked = marked
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
        self.arrived = IntentsArrived(
            started_ns=self.started_ns,
            now_ns=clock(),
            settle_ms=config.start_settle_ms,
            wait_ms=config.start_wait_ms,
            marked=False,  # known with the market's key
        )
        self.listed_open: frozenset[str] = frozenset()
        self.listed_traded: frozenset[str] = frozenset()

    def _runner(self) -> ExchangeRunner:
        if self.runner is None:
            self.runner = self.lazy.get(self)
        return self.runner

    # --- inputs ----------------------------------------------------------------------------

    def on_batch(self, values: list[Item]) -> list[Out]:
        events = sum(type(v) is not CaughtUp for v in values)
        metrics.EVENTS_IN.labels(step=self.step).inc(events)
        if not self.key:
            self.key = values[0].key
            self.symbol = split_market_key(self.key)[1]
            self.arrived.marked = self.key in self.marked
            if self.next_sweep_ns is not None:
                # Mass status as soon as the market is seen (at start, or its first item):
                # orphans left by an earlier run, orders and fills missed while down.
                self._sweep()
        out: list[Out] = []
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
            elif type(v) is CaughtUp:
                self.arrived.on_marker(v)
        if intents and self.syncing:
            self.held += intents
            self.arrived.on_intents(intents, self.clock())
        elif intents:
            out += self._submit(intents, n_open)
        out += self._harvest()
        out += self._end_sync()
        return out

    def _submit(self, intents: list[OrderIntent], n_open: int) -> list[Out]:
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

    def _end_sync(self, force: bool = False) -> list[Out]:
        """Once the start's mass status is in and the intents from before this run have all
        arrived (see :class:`~makerflow.sinks.exchange_start.IntentsArrived`; at the end of
        the input in any case), apply the listing and release the held intents."""
        if not self.syncing or (self.start_status is None and not self.start_failed):
            return []
        # Past start_wait_ms (intents stamped with recorded event times, a replay or the
        # demo, never look "of this run"; a topic that cannot be read leaves the listed
        # orders unmanaged), the listing is judged with what came: an orphan is cancelled.
        verdict = "arrived" if force else self.arrived.verdict(self.clock())
        if verdict is None:
            return []
        if verdict == "arrived":
            log.info("%s: start judged with %d intent(s) held", self.key, len(self.held))
        else:
            log.warning(
                "%s: the intents from before this run were not all read within %d ms; the"
                " venue's listing is judged with the %d that came",
                self.key,
                self.config.start_wait_ms,
                len(self.held),
            )
        self.syncing = False
        out: list[Out] = []
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

    def on_notify(self) -> list[Out]:
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

    def on_eof(self) -> list[Out]:
        """A clean end of the input: finish the work in flight, then sweep once more, all
        within ``drain_timeout_s``. The last sweep makes the end agree with the venue: what
        it did since the sweep before that no event told (an expiry whose event was lost)
        would otherwise be believed open until the next run's first sweep."""
        out: list[Out] = []
        runner = self.runner
        if runner is None:
            return out
        deadline = time.monotonic() + self.config.drain_timeout_s
        out += self._drain(runner, deadline)
        if self.next_sweep_ns is not None and not self.sweeping:
            self._sweep()
            out += self._drain(runner, deadline)
        self.lazy.release(self)
        self.runner = None
        return out

    def _drain(self, runner: ExchangeRunner, deadline: float) -> list[Out]:
        """Harvest until nothing is in flight, or the deadline (monotonic) passed. What
        finished work sets off (a sweep's cancels and look-ups) is work too."""
        out: list[Out] = []
        while True:
            runner.drain(self.key, max(deadline - time.monotonic(), 0.0))
            out += self._harvest()
            out += self._end_sync(force=True)
            idle = not runner.busy(self.key) and not runner.resolving(self.key)
            if idle or time.monotonic() >= deadline:
                return out

    def snapshot(self) -> OrderStateSnapshot:
        return self.state.snapshot()

    # --- results ---------------------------------------------------------------------------

    def _harvest(self) -> list[Out]:
        runner = self.runner
        if runner is None:
            return []
        out: list[Out] = []
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

    def _events(self, events: Iterable[OrderEvent]) -> list[Out]:
        out: list[Out] = []
        for ev in events:
            self.state.on_order_event(ev)
            out.append(ev)
        return out

    def _reconcile(self, status: VenueStatus, held: frozenset[str] = frozenset()) -> list[Out]:
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
        out: list[Out] = []
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


class BatchLogic(op.StatefulBatchLogic[Item, Out, OrderStateSnapshot]):
    """The Bytewax face of :class:`ExecuteLogic`."""

    def __init__(self, logic: ExecuteLogic) -> None:
        self.logic = logic

    def on_batch(self, values: list[Item]) -> tuple[Iterable[Out], bool]:
        return self.logic.on_batch(values), False

    def on_notify(self) -> tuple[Iterable[Out], bool]:
        return self.logic.on_notify(), False

    def on_eof(self) -> tuple[Iterable[Out], bool]:
        return self.logic.on_eof(), False

    def notify_at(self) -> datetime | None:
        return self.logic.notify_at()

    def snapshot(self) -> OrderStateSnapshot:
        return self.logic.snapshot()
