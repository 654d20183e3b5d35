"""A disconnect that is confirmed: cancel everything of ours on a market, then ask the venue
until none of our orders remain there.

A halt is done when the venue says that no order with our client-id prefix is open, not when
the cancel was sent: the cancel-all can fail (5xx, timeouts, a 429), answer for some orders
only, or race an order placed a moment earlier. :func:`flatten` therefore loops

    cancel_all_orders(symbol)  ->  fetch_open_orders(symbol)  ->  ours left?  ->  back off

until the venue lists none of ours. Past ``deadline_s`` it calls ``on_cancel_failed`` once
with what is still open (the ``KillSwitchCancelFailed`` alert, critical) and keeps trying.
``makerflow_kill_switch_flat_seconds`` records the time from the breach to the confirmation.

This is an edge (I/O with the venue through any ccxt async client); the exchange sink calls it
from its cancel-all path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt.async_support as ccxt

from makerflow import metrics

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
            took = (
                f"{self.breach_to_flat_s:.3f}s after the breach"
                if self.breach_to_flat_s
                else (f"in {self.elapsed_s:.3f}s")
            )
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
