"""The exchange sink's asyncio side: one loop in a daemon thread per Bytewax worker, running an
:class:`~makerflow.sinks.exchange_executor.ExchangeExecutor`.

The synchronous Bytewax step never waits on it. It :meth:`~ExchangeRunner.submit` s a market's
intents and later :meth:`~ExchangeRunner.take` s whatever finished. Intents run as soon as
what they depend on is done, and no sooner: an intent waits for the market's earlier intents
on the same client order id, and for the market's last cancel-all; a cancel-all waits for
everything of its market before it. Independent intents overlap, so one slow answer delays
only what depends on it (never another market). Results are released in the order the
intents were submitted, so a market's events keep its intents' order. Orders whose outcome is
unknown are looked up in the background and their resolutions (and sweeps) are released as
they come.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import ccxt.async_support as ccxt

from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.exchange_executor import ExchangeExecutor
from makerflow.sinks.exchange_lost import Unknown
from makerflow.sinks.venue_status import VenueStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobDone:
    """A batch of one market's intents was executed: its events, in the intents' order."""

    cids: tuple[str, ...]
    """The client order ids the intents were for (no longer in flight)."""
    events: tuple[OrderEvent, ...]


@dataclass(frozen=True)
class Resolved:
    """What the venue finally said about orders whose outcome was unknown, or about orders
    the sweep looked up."""

    events: tuple[OrderEvent, ...]


@dataclass(frozen=True)
class Swept:
    status: VenueStatus


@dataclass(frozen=True)
class SweepFailed:
    error: str


Done = JobDone | Resolved | Swept | SweepFailed


@dataclass
class _Lane:
    """One market: what its intents wait on, and what finished, not yet taken."""

    by_cid: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    """The last task of each client order id (loop side)."""
    barrier: asyncio.Future[Any] | None = None
    """The last cancel-all (loop side)."""
    running: set[asyncio.Future[Any]] = field(default_factory=set)
    """Tasks not finished (loop side)."""
    next_seq: int = 0
    next_release: int = 0
    finished: dict[int, Done] = field(default_factory=dict)
    """Finished intents by submission number, held until those before them finish."""
    outbox: collections.deque[Done] = field(default_factory=collections.deque)
    pending: int = 0
    """Work submitted and not finished (read by the worker thread, so under the lock)."""


class ExchangeRunner:
    """An :class:`ExchangeExecutor` on its own loop; see the module docstring."""

    def __init__(self, executor: ExchangeExecutor) -> None:
        self.executor = executor
        self._loop = asyncio.new_event_loop()
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._resolver: asyncio.Task[None] | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="exchange-sink", daemon=True
        )
        self._thread.start()

    # --- the worker thread's side --------------------------------------------------------

    def submit(self, key: str, intents: list[OrderIntent], open_orders: int) -> None:
        """Execute ``intents`` (one market's, in order); the guard sees ``open_orders``
        orders open before them, plus the places before each in this batch."""
        admitted = 0
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            lane.pending += len(intents)
            numbered = []
            for intent in intents:
                numbered.append((lane.next_seq, intent, open_orders + admitted))
                lane.next_seq += 1
                admitted += intent.action == "place"
        # call_soon_threadsafe keeps the submission order, so the dependencies do too.
        self._loop.call_soon_threadsafe(self._start_intents, key, numbered)

    def submit_sweep(self, key: str, symbol: str) -> None:
        """Ask the venue for the market's open orders, newest fills and balances."""

        async def job() -> Done:
            try:
                return Swept(await self.executor.venue_status(symbol))
            except ccxt.BaseError as exc:
                return SweepFailed(f"{type(exc).__name__}: {exc}")

        self._enqueue(key, job)

    def submit_lookups(self, key: str, orders: list[Unknown]) -> None:
        """Orders the state believes live that the venue does not list: resolve them by
        client id, as lost places are (found: what the venue says; never found after the
        receive window: not placed)."""

        async def job() -> Done:
            for u in orders:
                cid = u.intent.client_order_id or ""
                self.executor.unknown.setdefault(cid, u)
            return Resolved(tuple(await self.executor.resolve_unknown()))

        self._enqueue(key, job)

    def take(self, key: str) -> list[Done]:
        """Everything released for ``key`` since the last call, in order."""
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None or not lane.outbox:
                return []
            out = list(lane.outbox)
            lane.outbox.clear()
            return out

    def busy(self, key: str) -> bool:
        """Jobs in flight (or finished and not taken) for ``key``."""
        with self._lock:
            lane = self._lanes.get(key)
            return lane is not None and bool(lane.pending or lane.outbox)

    def resolving(self, key: str) -> bool:
        """Orders of ``key`` whose outcome is unknown, being looked up."""
        return any(u.intent.key == key for u in list(self.executor.unknown.values()))

    def drain(self, key: str, timeout_s: float) -> None:
        """Wait (at the end of the input) until ``key`` has nothing in flight, or
        ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                lane = self._lanes.get(key)
                jobs = lane.pending if lane is not None else 0
            unknown = any(u.intent.key == key for u in list(self.executor.unknown.values()))
            if not jobs and not unknown:
                return
            time.sleep(0.01)
        log.warning("execution of %s still had work in flight after %.1fs", key, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the ccxt client (requests in flight are abandoned) and stop the loop."""

        async def stop() -> None:
            if self._resolver is not None:
                self._resolver.cancel()
            await self.executor.close()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=timeout_s)

    # --- the loop's side ---------------------------------------------------------------------

    def _enqueue(self, key: str, job: Callable[[], Coroutine[Any, Any, Done]]) -> None:
        """Work that depends on no intent (a sweep, look-ups): released when done."""
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            lane.pending += 1
        self._loop.call_soon_threadsafe(self._start_free, key, job)

    def _start_free(self, key: str, job: Callable[[], Coroutine[Any, Any, Done]]) -> None:
        self._ensure_resolver()
        lane = self._lanes[key]

        async def run() -> None:
            done = await self._safely(job)
            with self._lock:
                lane.outbox.append(done)
                lane.pending -= 1

        self._loop.create_task(run())

    def _start_intents(self, key: str, numbered: list[tuple[int, OrderIntent, int]]) -> None:
        self._ensure_resolver()
        lane = self._lanes[key]
        for seq, intent, n_open in numbered:
            cid = intent.client_order_id or ""
            if intent.action == "cancel_all":
                deps = set(lane.running)
            else:
                deps = {f for f in (lane.by_cid.get(cid), lane.barrier) if f is not None}
            task = self._loop.create_task(self._run_intent(lane, seq, deps, intent, n_open))
            lane.running.add(task)
            task.add_done_callback(lane.running.discard)
            if intent.action == "cancel_all":
                lane.barrier = task
            elif cid:
                lane.by_cid[cid] = task
                task.add_done_callback(_forget_when_last(lane.by_cid, cid))

    async def _run_intent(
        self,
        lane: _Lane,
        seq: int,
        deps: set[asyncio.Future[Any]],
        intent: OrderIntent,
        n_open: int,
    ) -> None:
        if deps:
            await asyncio.wait(deps)

        cids = (intent.client_order_id,) if intent.client_order_id else ()
        try:
            # execute_many turns every failure of the venue (and any bug) into a reject.
            events = await self.executor.execute_many([intent], lambda _k: n_open)
        except Exception:
            log.exception("executing %s %s failed", intent.action, intent.client_order_id)
            events = []
        done = JobDone(cids, tuple(events))
        with self._lock:
            lane.finished[seq] = done
            lane.pending -= 1
            while lane.next_release in lane.finished:
                lane.outbox.append(lane.finished.pop(lane.next_release))
                lane.next_release += 1

    async def _safely(self, job: Callable[[], Coroutine[Any, Any, Done]]) -> Done:
        try:
            return await job()
        except Exception as exc:  # a bug, not the venue: never lose the lane
            log.exception("an execution job failed")
            return SweepFailed(f"{type(exc).__name__}: {exc}")

    def _ensure_resolver(self) -> None:
        if self._resolver is None:
            self._resolver = self._loop.create_task(self._resolve_forever())

    async def _resolve_forever(self) -> None:
        ex = self.executor
        while True:
            await asyncio.sleep(ex.config.resolve_interval_s / 2)
            if not ex.unknown:
                continue
            try:
                events = await ex.resolve_unknown()
            except Exception:
                log.exception("resolving unknown orders failed; retrying")
                continue
            by_key: dict[str, list[OrderEvent]] = {}
            for ev in events:
                by_key.setdefault(ev.key, []).append(ev)
            with self._lock:
                for key, evs in by_key.items():
                    self._lanes.setdefault(key, _Lane()).outbox.append(Resolved(tuple(evs)))


def _forget_when_last(
    by_cid: dict[str, asyncio.Future[Any]], cid: str
) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback dropping ``cid``'s entry if ``task`` is still its last task."""

    def forget(task: asyncio.Future[Any]) -> None:
        if by_cid.get(cid) is task:
            del by_cid[cid]

    return forget
