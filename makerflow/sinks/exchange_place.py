"""Places at the venue: rounding, the minimum notional, the send with its retries, a lost
answer, and the look-up of a place sent before (by this run, or by the run before it).

A place is sent at most once per client id. One this executor already sent (a redelivered
intent) is answered from the venue; one from before this run is looked up by client id first
(:func:`look_up_replayed`), since the run before may have placed it and seen it close, and a
venue that frees a closed order's id (Binance) would place it twice. A refusal is retried;
an answer lost is never re-sent but looked up, else kept ``unknown``
(:mod:`makerflow.sinks.exchange_lost`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ccxt.async_support as ccxt

from makerflow import metrics
from makerflow.schemas.events import OrderEvent, OrderIntent, Side
from makerflow.sinks.exchange_lost import Unknown, unknown_event
from makerflow.sinks.exchange_retry import GaveUp, retrying
from makerflow.venue import classify_error, may_be_duplicate_id

if TYPE_CHECKING:
    from makerflow.sinks.exchange_executor import ExchangeExecutor

log = logging.getLogger(__name__)


async def look_up_replayed(ex: ExchangeExecutor, intent: OrderIntent) -> list[OrderEvent] | None:
    """The venue's word on a place from before this run, ``None`` when it never saw it.
    When the venue cannot say, sending could place it twice: it is resolved instead."""
    cid = intent.client_order_id or ""
    if ex.sent_before(cid):
        return None  # sent by this run: _place answers from the venue
    found, err = await ex.lookup(intent.key, intent.symbol, cid)
    if found is not None:
        log.info("place %s from before this run is on the venue; not re-sending", cid)
        return [ex.from_order(intent, found)]
    if err is None:
        return None
    u = Unknown(intent, intent.price, intent.qty or 0.0, ex.now(), next_ns=ex.now())
    ex.lost.orders[cid] = u
    return [unknown_event(u, "a place from before this run; the venue cannot say")]


async def place_order(ex: ExchangeExecutor, intent: OrderIntent) -> list[OrderEvent]:
    client = await ex.client()
    cid = intent.client_order_id or ""
    key = intent.key
    assert intent.side is not None and intent.qty is not None
    try:
        market = client.market(intent.symbol)
        amount = float(client.amount_to_precision(intent.symbol, intent.qty))
        price = (
            float(client.price_to_precision(intent.symbol, intent.price))
            if intent.order_type == "limit" and intent.price is not None
            else None
        )
    except ccxt.BaseError as exc:
        return [ex.reject(intent, "invalid_order", f"{type(exc).__name__}: {exc}")]
    if amount <= 0:
        return [ex.reject(intent, "min_notional", f"quantity {intent.qty} rounds to 0")]
    min_cost = ((market.get("limits") or {}).get("cost") or {}).get("min")
    valuation = price if price is not None else intent.reference
    if min_cost and valuation is not None and amount * valuation < float(min_cost):
        return [
            ex.reject(
                intent,
                "min_notional",
                f"notional {amount * valuation:.8f} < minimum {min_cost}",
            )
        ]
    if ex.sent_before(cid):
        # Sent before (a redelivered intent): what the venue holds is the answer. A venue
        # that frees an id once its order is closed (Binance) would place it again.
        return await _already_sent(ex, intent, cid)
    ex.remember(cid, intent.side, price, amount)
    params: dict[str, Any] = {"clientOrderId": cid}
    if intent.order_type == "limit" and intent.post_only:
        params["postOnly"] = True
    side = intent.side  # narrowed for the closures below
    sent_ns = 0  # when the attempt that failed was sent (the receive window counts from it)

    async def send() -> list[OrderEvent]:
        nonlocal sent_ns
        sent_ns = ex.now()
        order = await ex.call(
            key,
            client.create_order,
            intent.symbol,
            intent.order_type,
            side,
            amount,
            price,
            params,
        )
        return [ex.from_order(intent, order)]

    async def on_error(exc: ccxt.BaseError) -> list[OrderEvent] | None:
        if classify_error(exc).outcome == "maybe_processed":
            return await _lost(ex, intent, price, amount, sent_ns, exc)
        if may_be_duplicate_id(exc):
            # Binance refuses a client id while an order with it is open: ours, from an
            # earlier send. Ask the venue rather than reading the message.
            found, _ = await ex.lookup(key, intent.symbol, cid)
            if found is not None and _same_order(found, side, price, amount):
                log.info("order %s was on the venue already; not re-sending", cid)
                return [ex.from_order(intent, found)]
        return None

    result = await retrying(
        ex, intent, send, on_error, action="place", max_retry_after_s=ex.config.max_retry_after_s
    )
    if not isinstance(result, GaveUp):
        return result
    # Every attempt was refused or never left: the venue certainly has no such order.
    ex.forget(cid)
    return [ex.reject(intent, result.kind.reason, result.describe())]


async def _already_sent(ex: ExchangeExecutor, intent: OrderIntent, cid: str) -> list[OrderEvent]:
    found, err = await ex.lookup(intent.key, intent.symbol, cid)
    if found is not None:
        return [ex.from_order(intent, found)]
    if cid in ex.unknown:
        return [unknown_event(ex.unknown[cid], "still resolving by client id")]
    log.warning(
        "place %s was sent before and the venue does not show it (%s); not re-sending",
        cid,
        err,
    )
    metrics.ORDER_REJECTS.labels(venue=intent.venue, reason="duplicate_intent").inc()
    return []


async def _lost(
    ex: ExchangeExecutor,
    intent: OrderIntent,
    price: float | None,
    amount: float,
    sent_ns: int,
    exc: BaseException,
) -> list[OrderEvent]:
    """The answer to a place was lost: never re-send; look it up; else it is unknown."""
    cid = intent.client_order_id or ""
    found, _ = await ex.lookup(intent.key, intent.symbol, cid)
    if found is not None:
        log.info("order %s landed though its answer was lost (%s)", cid, type(exc).__name__)
        metrics.ORDERS_UNKNOWN.labels(venue=intent.venue, resolution="found_at_once").inc()
        return [ex.from_order(intent, found)]
    u = Unknown(intent, price, amount, sent_ns, next_ns=ex.now())
    ex.lost.orders[cid] = u
    metrics.ORDERS_UNKNOWN.labels(venue=intent.venue, resolution="pending").inc()
    log.warning("place %s: answer lost (%s); outcome unknown", cid, type(exc).__name__)
    reason = classify_error(exc).reason
    return [unknown_event(u, f"{reason}: {type(exc).__name__}: answer lost")]


def _same_order(order: Mapping[str, Any], side: Side, price: float | None, amount: float) -> bool:
    """Whether the venue's order is the one this place describes (a client id reused for a
    different order is a bug upstream, not ours to report as placed)."""
    if order.get("side") != side:
        return False
    if not math.isclose(float(order.get("amount") or 0.0), amount, rel_tol=1e-9):
        return False
    p = order.get("price")
    return price is None or p is None or math.isclose(float(p), price, rel_tol=1e-9)
