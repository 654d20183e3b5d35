"""Cancels and cancel-alls at the venue.

A cancel is retried while the venue refuses it or cannot be reached; one that fails leaves
the order alive, so it reports the order's state as the venue says (never ``rejected``,
which would tell the quoter it is gone, nor a made-up "last known" state). A cancel of a
place whose answer was lost and that the venue does not show yet keeps it ``unknown`` and is
carried out once it lands.

A cancel-all is one request, retried, whose answer names the orders it canceled; then (with
``confirm_cancel_all``, the default) the kill switch's confirmed flatten
(:func:`makerflow.sinks.flatten.flatten`: cancel-all, then check the venue's open orders until
none of ours remain, with backoff, up to ``cancel_all_give_up_s``). A caller may pass its own
``flatten`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt
import msgspec

from makerflow import metrics
from makerflow.schemas.events import OrderEvent, OrderIntent, Side
from makerflow.sinks.exchange_lost import unknown_event
from makerflow.sinks.exchange_retry import GaveUp, retrying
from makerflow.sinks.flatten import flatten as confirm_flat

if TYPE_CHECKING:
    from makerflow.sinks.exchange_executor import ExchangeExecutor

log = logging.getLogger(__name__)

Flatten = Callable[[Any, OrderIntent], Awaitable[list[OrderEvent]]]
"""A cancel-all that confirms: ``flatten(client, intent)`` cancels every order of ours on
the intent's market and returns the order events once the venue lists none (the kill
switch's ``makerflow.sinks.flatten``). Without one, a cancel-all is one request, retried."""


async def cancel_order(ex: ExchangeExecutor, intent: OrderIntent) -> list[OrderEvent]:
    client = await ex.client()
    cid = intent.client_order_id or ""
    key = intent.key

    async def send() -> list[OrderEvent]:
        order = await ex.call(key, client.cancel_order, None, intent.symbol, {"clientOrderId": cid})
        return [ex.from_order(intent, order, status="canceled")]

    async def on_error(exc: ccxt.BaseError) -> list[OrderEvent] | None:
        if not isinstance(exc, ccxt.OrderNotFound):
            return None
        # Already closed (filled, or canceled by an earlier attempt): report the truth.
        found, _ = await ex.lookup(key, intent.symbol, cid)
        if found is not None:
            return [ex.from_order(intent, found)]
        u = ex.unknown.get(cid)
        if u is not None:
            # A lost place may still land: cancel it when it does, and say nothing that
            # would free its slot meanwhile.
            u.cancel_wanted = True
            return [unknown_event(u, "cancel: not on the venue yet")]
        return [ex.reject(intent, "unknown_order", f"{type(exc).__name__}: {exc}")]

    # No max_retry_after_s: a cancel is the only way to take the order off the venue, so it
    # waits out even a ban a place would give up at.
    result = await retrying(ex, intent, send, on_error, action="cancel")
    if not isinstance(result, GaveUp):
        return result
    reason = result.kind.reason
    detail = f"cancel_rejected: {reason}: {result.describe()}"
    metrics.ORDER_REJECTS.labels(venue=intent.venue, reason=reason).inc()
    log.warning("cancel of %s failed: %s", cid, detail)
    # A failed cancel leaves the order alive: report its state as the venue says, never
    # "rejected", which would tell the quoter it is gone. When the venue cannot say either,
    # say nothing: the order state keeps it pending cancel, and the sweep looks again.
    found, _ = await ex.lookup(key, intent.symbol, cid)
    if found is not None:
        return [msgspec.structs.replace(ex.from_order(intent, found), reason=detail)]
    u = ex.unknown.get(cid)
    if u is not None:
        u.cancel_wanted = True
        return [unknown_event(u, detail)]
    return []


async def cancel_all(
    ex: ExchangeExecutor, intent: OrderIntent, flatten: Flatten | None
) -> list[OrderEvent]:
    """Cancel every open order on the intent's market; with ``confirm_cancel_all``, then
    check the venue until none of ours remain (:func:`makerflow.sinks.flatten.flatten`)."""
    client = await ex.client()
    if flatten is not None:
        return await flatten(client, intent)
    events = await _cancel_all_once(ex, client, intent)
    cfg = ex.config
    if not cfg.confirm_cancel_all:
        return events
    report = await confirm_flat(
        client,
        intent.symbol,
        prefix=cfg.client_id_prefix,
        deadline_s=cfg.cancel_all_deadline_s,
        give_up_s=cfg.cancel_all_give_up_s,
        sleep=ex.sleep,
    )
    seen = {e.client_order_id for e in events}
    for cid in report.canceled:
        # Orders the confirmation's own cancel-alls took (a race, or a failed first one).
        if cid not in seen:
            placed = ex.placed(cid)
            side: Side = placed[0] if placed else "buy"
            events.append(
                OrderEvent(
                    ts=intent.ts,
                    venue=intent.venue,
                    symbol=intent.symbol,
                    account=intent.account,
                    client_order_id=cid,
                    status="canceled",
                    side=side,
                    price=placed[1] if placed else None,
                    qty=placed[2] if placed else 0.0,
                    reason=intent.reason,
                )
            )
    if not report.confirmed:
        metrics.ORDER_REJECTS.labels(venue=intent.venue, reason="cancel_all_unconfirmed").inc()
        log.error("cancel_all on %s: %s", intent.key, report.describe())
    return events


async def _cancel_all_once(
    ex: ExchangeExecutor, client: Any, intent: OrderIntent
) -> list[OrderEvent]:
    async def send() -> list[OrderEvent]:
        orders = await ex.call(intent.key, client.cancel_all_orders, intent.symbol)
        return [ex.from_order(intent, o, status="canceled") for o in orders]

    async def on_error(exc: ccxt.BaseError) -> list[OrderEvent] | None:
        return [] if isinstance(exc, ccxt.OrderNotFound) else None  # nothing was open

    result = await retrying(ex, intent, send, on_error, action="cancel_all")
    if not isinstance(result, GaveUp):
        return result
    metrics.ORDER_REJECTS.labels(venue=intent.venue, reason=result.kind.reason).inc()
    log.error("cancel_all on %s failed: %s", intent.key, result.describe())
    return []
