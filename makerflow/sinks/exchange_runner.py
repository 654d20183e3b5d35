"""The exchange sink's asyncio side: one loop in a daemon thread per Bytewax worker, running an
:class:`~makerflow.sinks.exchange_executor.ExchangeExecutor`.

The synchronous Bytewax step never waits on it. It :meth:`~ExchangeRunner.submit` s work for a
market and later :meth:`~ExchangeRunner.take` s whatever finished. Each market is a lane:
its jobs run one after another (so a market's intents keep their order), while lanes run
concurrently (so a slow market delays only itself). Orders whose outcome is unknown are looked
up in the background and their resolutions land in their market's outbox too.
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

    places: tuple[str, ...]
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
    tail: asyncio.Future[Any] | None = None
    outbox: collections.deque[Done] = field(default_factory=collections.deque)
    pending: int = 0
    """Jobs submitted and not finished (read by the worker thread, so under the lock)."""


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
        """Execute ``intents`` (one market's) after the market's earlier jobs; the guard
        sees ``open_orders`` orders open before them."""
        places = tuple(i.client_order_id or "" for i in intents if i.action == "place")

        async def job() -> Done:
            events = await self.executor.execute_many(intents, lambda _k: open_orders)
            return JobDone(places, tuple(events))

        self._enqueue(key, job)

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
        """Everything finished for ``key`` since the last call, in order."""
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

    def close(self) -> None:
        async def stop() -> None:
            if self._resolver is not None:
                self._resolver.cancel()
            await self.executor.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # --- the loop's side ---------------------------------------------------------------------

    def _enqueue(self, key: str, job: Callable[[], Coroutine[Any, Any, Done]]) -> None:
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            lane.pending += 1
        # call_soon_threadsafe keeps the submission order, so the lane's chain does too.
        self._loop.call_soon_threadsafe(self._chain, key, job)

    def _chain(self, key: str, job: Callable[[], Coroutine[Any, Any, Done]]) -> None:
        lane = self._lanes[key]
        previous = lane.tail
        lane.tail = self._loop.create_task(self._run(lane, previous, job))
        if self._resolver is None:
            self._resolver = self._loop.create_task(self._resolve_forever())

    async def _run(
        self,
        lane: _Lane,
        previous: asyncio.Future[Any] | None,
        job: Callable[[], Coroutine[Any, Any, Done]],
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            done = await job()
        except Exception as exc:  # a bug, not the venue: never lose the lane
            log.exception("an execution job failed")
            done = SweepFailed(f"{type(exc).__name__}: {exc}")
        with self._lock:
            lane.outbox.append(done)
            lane.pending -= 1

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
