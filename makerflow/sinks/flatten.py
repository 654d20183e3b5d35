"""A disconnect that is confirmed: cancel everything of ours on a market, then ask the venue
until none of our orders remain there.

A halt is done when the venue says that no order with our client-id prefix is open, not when
the cancel was sent: the cancel-all can fail (5xx, timeouts, a 429), answer for some orders
only, or race an order placed a moment earlier. :func:`flatten` therefore loops

    cancel_all_orders(symbol)  ->  fetch_open_orders(symbol)  ->  ours left?  ->  back off

until the venue lists none of ours; from the second round on, what the venue still lists is
also cancelled one by one (a venue whose cancel-all fails may still cancel by id). Past
``deadline_s`` it calls ``on_cancel_failed`` once
with what is still open (the ``KillSwitchCancelFailed`` alert, critical) and keeps trying.
``makerflow_kill_switch_flat_seconds`` records the time from the breach to the confirmation.

This is an edge (I/O with the venue through any ccxt async client); the exchange sink calls it
from its cancel-all path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import ccxt.async_support as ccxt
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.risk_gate import state_targets
from makerflow.schemas.config import Config
from makerflow.schemas.events import Alert, RiskState, split_market_key

log = logging.getLogger(__name__)

OUR_PREFIX = "mf-"


@dataclass(frozen=True)
class FlattenReport:
    """What the venue confirmed about one market after a kill switch."""

    symbol: str
    confirmed: bool
    """True when the venue listed none of our open orders on the market."""
    remaining: tuple[str, ...]
    """Client ids of ours the venue still listed at the last look (empty when confirmed)."""
    canceled: tuple[str, ...]
    """Client ids the venue answered as cancelled along the way."""
    attempts: int
    elapsed_s: float
    """Wall time spent in :func:`flatten`."""
    breach_to_flat_s: float | None = None
    """From the breach's event time to the confirmation (``None`` until confirmed, or when no
    breach time was given)."""
    errors: tuple[str, ...] = field(default=())
    """The venue errors met on the way (class: message), most recent last, at most 20."""

    def describe(self) -> str:
        """One line for an alert: what is confirmed, and what is not."""
        if self.confirmed:
            took = f"in {self.elapsed_s:.3f}s"
            if self.breach_to_flat_s:
                took += f", {self.breach_to_flat_s:.3f}s after the breach"
            return (
                f"confirmed flat on {self.symbol}: the venue lists none of our orders"
                f" ({len(self.canceled)} canceled, {self.attempts} attempt(s), {took})"
            )
        last = f"; last error {self.errors[-1]}" if self.errors else ""
        return (
            f"NOT confirmed flat on {self.symbol} after {self.elapsed_s:.1f}s and"
            f" {self.attempts} attempt(s): {len(self.remaining)} of our orders still open"
            f" ({', '.join(self.remaining[:10])}){last}"
        )


def _cid(order: Mapping[str, Any]) -> str:
    return str(order.get("clientOrderId") or (order.get("info") or {}).get("clientOrderId") or "")


def _orig_cid(order: Mapping[str, Any]) -> str:
    info = order.get("info") or {}
    return str(info.get("origClientOrderId") or order.get("clientOrderId") or "")


async def flatten(
    client: Any,
    symbol: str,
    *,
    prefix: str = OUR_PREFIX,
    deadline_s: float = 2.0,
    give_up_s: float | None = None,
    backoff_s: float = 0.01,
    max_backoff_s: float = 0.5,
    breach_ts: int | None = None,
    on_cancel_failed: Callable[[FlattenReport], Any] | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now_ns: Callable[[], int] = time.time_ns,
) -> FlattenReport:
    """Cancel every order of ours on ``symbol`` and return once the venue confirms none
    remain (or ``give_up_s`` passed; ``None``, the default, tries for as long as it takes).

    ``client``: a ccxt async client (``cancel_all_orders``, ``fetch_open_orders``), markets
    loaded or not. Ours are the orders whose client id starts with ``prefix``; others on the
    account are left alone (a cancel-all cancels them too where the venue has no filter; the
    check only waits for ours). Errors from the venue are retried with exponential backoff
    (``backoff_s`` doubling up to ``max_backoff_s``). Past ``deadline_s`` without a
    confirmation, ``on_cancel_failed(report)`` is called once (it may be a coroutine
    function) and ``makerflow_kill_switch_cancel_failed{market=symbol}`` reads 1; on the
    confirmation ``makerflow_kill_switch_confirmed_flat`` reads 1 and
    ``makerflow_kill_switch_flat_seconds`` observes ``now_ns() - breach_ts`` (the breach's
    event time; the flatten's own duration when ``breach_ts`` is None).
    """
    start = monotonic()
    flat_gauge = metrics.KILL_SWITCH_CONFIRMED_FLAT.labels(market=symbol)
    failed_gauge = metrics.KILL_SWITCH_CANCEL_FAILED.labels(market=symbol)
    flat_gauge.set(0)
    canceled: list[str] = []
    errors: list[str] = []
    remaining: tuple[str, ...] = ()
    attempts = 0
    alerted = False
    wait = backoff_s

    def report(confirmed: bool, took: float | None = None) -> FlattenReport:
        return FlattenReport(
            symbol=symbol,
            confirmed=confirmed,
            remaining=() if confirmed else remaining,
            canceled=tuple(dict.fromkeys(canceled)),
            attempts=attempts,
            elapsed_s=monotonic() - start,
            breach_to_flat_s=took,
            errors=tuple(errors[-20:]),
        )

    while True:
        attempts += 1
        try:
            answered = await client.cancel_all_orders(symbol)
            canceled.extend(c for c in map(_orig_cid, answered or []) if c.startswith(prefix))
        except ccxt.OrderNotFound:
            pass  # nothing was open: the look below confirms it
        except ccxt.BaseError as exc:
            errors.append(f"cancel_all_orders: {type(exc).__name__}: {exc}"[:300])
        if remaining and attempts > 1:
            # The cancel-all did not clear them (it fails, or the venue ignores it): cancel
            # what the venue still listed one by one, at once.
            results = await asyncio.gather(
                *(client.cancel_order(None, symbol, {"clientOrderId": c}) for c in remaining),
                return_exceptions=True,
            )
            for c, r in zip(remaining, results, strict=True):
                if isinstance(r, ccxt.OrderNotFound):
                    continue
                if isinstance(r, BaseException):
                    errors.append(f"cancel_order {c}: {type(r).__name__}: {r}"[:300])
                else:
                    canceled.append(c)
        try:
            open_orders = await client.fetch_open_orders(symbol)
            remaining = tuple(c for c in map(_cid, open_orders) if c.startswith(prefix))
            if not remaining:
                took = (now_ns() - breach_ts) / 1e9 if breach_ts is not None else None
                done = report(True, max(took, 0.0) if took is not None else None)
                metrics.KILL_SWITCH_FLAT_SECONDS.observe(
                    done.breach_to_flat_s if done.breach_to_flat_s is not None else done.elapsed_s
                )
                flat_gauge.set(1)
                failed_gauge.set(0)
                log.info("%s", done.describe())
                return done
        except ccxt.BaseError as exc:
            errors.append(f"fetch_open_orders: {type(exc).__name__}: {exc}"[:300])
        elapsed = monotonic() - start
        if not alerted and elapsed >= deadline_s:
            alerted = True
            failed_gauge.set(1)
            bad = report(False)
            log.error("kill switch: %s", bad.describe())
            if on_cancel_failed is not None:
                res = on_cancel_failed(bad)
                if asyncio.iscoroutine(res):
                    await res
        if give_up_s is not None and elapsed >= give_up_s:
            return report(False)
        await sleep(wait)
        wait = min(wait * 2, max_backoff_s)


# --- the Bytewax operator: flatten every market a halt stops -----------------------------------


class FlattenConfig(Config, frozen=True, kw_only=True):
    """How a halt is confirmed at the venue (``[all_in_one.flatten]``, ``[execution.flatten]``)."""

    enabled: bool = True
    prefix: str = OUR_PREFIX
    deadline_s: float = 2.0
    """Past this without a confirmation: ``KillSwitchCancelFailed`` (critical)."""
    backoff_s: float = 0.01
    max_backoff_s: float = 0.5
    markets: tuple[str, ...] = ()
    """``venue:symbol`` keys wide scopes (global, account, asset) flatten."""
    poll_ms: int = 20
    """How often the step looks for finished flattens (wall clock, liveness only)."""


class _Runner:
    """One asyncio loop in a daemon thread per process, and the ccxt client on it."""

    def __init__(self, make_client: Callable[[], Any]) -> None:
        self._make = make_client
        self._client: Any = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="kill-switch-flatten", daemon=True
                ).start()
            return self._loop

    async def client(self) -> Any:
        if self._client is None:
            self._client = self._make()
        return self._client

    def close(self) -> None:
        """Close the client (a later halt opens a new one)."""
        loop, client = self._loop, self._client
        if loop is None or client is None:
            return
        self._client = None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=5)


@dataclass
class _Job:
    scope: str
    since: int
    future: Future[FlattenReport]


class _FlattenLogic(StatefulLogic[RiskState, Alert, tuple[tuple[str, int], ...]]):
    """One market: the halts it has flattened for, and the flattens under way."""

    def __init__(
        self,
        key: str,
        config: FlattenConfig,
        runner: _Runner,
        resume: tuple[tuple[str, int], ...] | None,
    ) -> None:
        self.key = key
        self.symbol = split_market_key(key)[1]
        self.config = config
        self.runner = runner
        self.done: dict[str, int] = dict(resume or ())
        """Scope -> ``since`` of the halt already flattened (or being flattened)."""
        self.jobs: list[_Job] = []
        self.failed: queue.SimpleQueue[tuple[str, FlattenReport]] = queue.SimpleQueue()

    def on_item(self, value: RiskState) -> tuple[Iterable[Alert], bool]:
        if value.status != "HALTED":
            self.done.pop(value.scope, None)
            return (), StatefulLogic.RETAIN
        if self.done.get(value.scope) == value.since:
            return (), StatefulLogic.RETAIN  # the heartbeat of a halt already handled
        self.done[value.scope] = value.since
        self.jobs.append(_Job(value.scope, value.since, self._start(value)))
        return (), StatefulLogic.RETAIN

    def _start(self, state: RiskState) -> Future[FlattenReport]:
        cfg = self.config

        def failed(rep: FlattenReport) -> None:
            self.failed.put((state.scope, rep))

        async def run() -> FlattenReport:
            client = await self.runner.client()
            return await flatten(
                client,
                self.symbol,
                prefix=cfg.prefix,
                deadline_s=cfg.deadline_s,
                backoff_s=cfg.backoff_s,
                max_backoff_s=cfg.max_backoff_s,
                breach_ts=state.since or state.ts,
                on_cancel_failed=failed,
            )

        return asyncio.run_coroutine_threadsafe(run(), self.runner.loop())

    def _alert(self, name: str, scope: str, rep: FlattenReport, ts: int) -> Alert:
        critical = name == "KillSwitchCancelFailed"
        labels = {"market": self.key, "confirmed": "true" if rep.confirmed else "false"}
        if rep.breach_to_flat_s is not None:
            labels["breach_to_flat_ms"] = f"{rep.breach_to_flat_s * 1e3:.0f}"
        return Alert(
            ts=ts,
            name=name,
            severity="critical" if critical else "info",
            scope=scope,
            message=f"kill switch {scope}: {rep.describe()}",
            labels=labels,
        )

    def on_notify(self) -> tuple[Iterable[Alert], bool]:
        out: list[Alert] = []
        while not self.failed.empty():
            scope, rep = self.failed.get()
            since = self.done.get(scope, 0)
            out.append(self._alert("KillSwitchCancelFailed", scope, rep, since))
        for job in [j for j in self.jobs if j.future.done()]:
            self.jobs.remove(job)
            try:
                rep = job.future.result()
            except Exception as exc:  # a bug, not the venue: say so loudly, never go quiet
                log.exception("flatten of %s failed", self.key)
                rep = FlattenReport(self.symbol, False, ("?",), (), 0, 0.0, None, (repr(exc),))
            name = "KillSwitchFlat" if rep.confirmed else "KillSwitchCancelFailed"
            out.append(self._alert(name, job.scope, rep, job.since))
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Alert], bool]:
        # The input ended (a bounded run): wait for the flattens under way, for a while.
        for job in self.jobs:
            with contextlib.suppress(Exception):
                job.future.result(timeout=self.config.deadline_s + 5.0)
        out, _ = self.on_notify()
        for job in self.jobs:  # still not done: say so
            rep = FlattenReport(self.symbol, False, ("?",), (), 0, 0.0, None, ("run ended",))
            out = [*out, self._alert("KillSwitchCancelFailed", job.scope, rep, job.since)]
        self.runner.close()
        return out, StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if not self.jobs:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=self.config.poll_ms)

    def snapshot(self) -> tuple[tuple[str, int], ...]:
        return tuple(self.done.items())


@operator
def flatten_on_halt(
    step_id: str,
    states: Stream[RiskState],
    config: FlattenConfig,
    make_client: Callable[[], Any],
) -> Stream[Alert]:
    """On every new halt (a scope's HALTED with a ``since`` not yet handled) flatten each
    market it stops (:func:`flatten`, with its own ccxt client from ``make_client``) and say
    what the venue confirmed: ``KillSwitchFlat`` (info, the breach-to-flat time) or
    ``KillSwitchCancelFailed`` (critical, what is still open; it keeps trying)."""
    runner = _Runner(make_client)
    keyed = op.flat_map(
        "fan_states", states, lambda s: [(k, s) for k in state_targets(s, config.markets)]
    )

    def build(key: str, resume: Any) -> _FlattenLogic:
        return _FlattenLogic(key, config, runner, resume)

    out = op.stateful("flatten", op.map("with_key", keyed, lambda kv: (kv[0], kv)), _Keyed(build))
    return op.key_rm("unkey", out)


class _Keyed:
    """``op.stateful`` builders do not get the key; this one carries it in the value."""

    def __init__(self, build: Callable[[str, Any], _FlattenLogic]) -> None:
        self.build = build

    def __call__(self, resume: Any) -> StatefulLogic[Any, Alert, Any]:
        return _KeyedLogic(self.build, resume)


class _KeyedLogic(StatefulLogic[tuple[str, RiskState], Alert, Any]):
    def __init__(self, build: Callable[[str, Any], _FlattenLogic], resume: Any) -> None:
        self.build = build
        self.inner: _FlattenLogic | None = None
        self.key: str | None = None
        if resume is not None:
            self.key = resume[0]
            self.inner = build(resume[0], resume[1])

    def on_item(self, value: tuple[str, RiskState]) -> tuple[Iterable[Alert], bool]:
        if self.inner is None:
            self.key = value[0]
            self.inner = self.build(value[0], None)
        return self.inner.on_item(value[1])

    def on_notify(self) -> tuple[Iterable[Alert], bool]:
        assert self.inner is not None
        return self.inner.on_notify()

    def notify_at(self) -> datetime | None:
        return None if self.inner is None else self.inner.notify_at()

    def on_eof(self) -> tuple[Iterable[Alert], bool]:
        return ((), StatefulLogic.RETAIN) if self.inner is None else self.inner.on_eof()

    def snapshot(self) -> Any:
        assert self.inner is not None
        return self.key, self.inner.snapshot()
