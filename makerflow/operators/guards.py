"""Fat-finger guards: pure checks an order intent must pass before anything is sent.

They catch the mistakes a bug upstream makes (a price off by a factor of ten, a quantity in the
wrong unit, a runaway ladder) where they are cheapest: before the exchange sees them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from makerflow.operators.rejections import rejected_event
from makerflow.schemas.config import Config
from makerflow.schemas.events import OrderEvent, OrderIntent

_CLOSED = frozenset({"filled", "canceled", "rejected", "expired"})


class GuardLimits(Config, frozen=True, kw_only=True):
    """Per-order limits. ``max_distance_bps`` is measured from ``intent.reference``; with
    ``require_reference`` an intent without one is refused."""

    max_order_notional: float = 50_000.0
    max_order_qty: float = math.inf
    max_open_orders_per_market: int = 40
    max_distance_bps: float = 500.0
    require_reference: bool = False


def check_intent(intent: OrderIntent, limits: GuardLimits, open_orders: int) -> str | None:
    """Why ``intent`` must not be sent, or ``None`` when it may.

    ``open_orders`` is how many of our orders rest on the intent's market now. Cancels always
    pass: removing risk is never blocked.
    """
    if intent.action != "place":
        if intent.action == "cancel" and not intent.client_order_id:
            return "malformed: cancel without client_order_id"
        return None
    if not intent.client_order_id:
        return "malformed: place without client_order_id"
    if intent.side is None:
        return "malformed: place without side"
    qty = intent.qty
    if qty is None or not math.isfinite(qty) or qty <= 0:
        return f"malformed: quantity {qty!r}"
    price = intent.price
    if intent.order_type == "limit" and (price is None or not math.isfinite(price) or price <= 0):
        return f"malformed: limit price {price!r}"
    if qty > limits.max_order_qty:
        return f"guard:max_order_qty: {qty} > {limits.max_order_qty}"
    ref = intent.reference
    valuation = price if price is not None else ref
    if valuation is not None:
        notional = valuation * qty
        if notional > limits.max_order_notional:
            return f"guard:max_order_notional: {notional:.2f} > {limits.max_order_notional:.2f}"
    elif limits.require_reference:
        return "guard:no_reference: a market order without a reference price"
    if open_orders >= limits.max_open_orders_per_market:
        return (
            f"guard:max_open_orders: {open_orders} open >= "
            f"{limits.max_open_orders_per_market} on {intent.key}"
        )
    if ref is None or not math.isfinite(ref) or ref <= 0:
        if limits.require_reference:
            return "guard:no_reference: the intent carries no reference price"
        return None
    if price is not None:
        distance_bps = abs(price - ref) / ref * 10_000.0
        if distance_bps > limits.max_distance_bps:
            return (
                f"guard:max_distance: {price} is {distance_bps:.1f} bps from reference {ref} "
                f"(limit {limits.max_distance_bps:.1f})"
            )
    return None


class OpenOrders:
    """Which of our orders are open, per market, from the intents we sent and the order events
    the venue reported. Pure; the operator keeps one per market."""

    def __init__(self, open_ids: Iterable[str] = ()) -> None:
        self._open: set[str] = set(open_ids)

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._open

    def on_event(self, ev: OrderEvent) -> None:
        if ev.status in _CLOSED:
            self._open.discard(ev.client_order_id)
        else:
            self._open.add(ev.client_order_id)

    def snapshot(self) -> tuple[str, ...]:
        return tuple(sorted(self._open))


def guard_rejected(intent: OrderIntent, problem: str) -> OrderEvent:
    """The rejected OrderEvent for an intent the guards refused, as the exchange sink
    reports it: ``reason`` is the problem itself (it starts with ``guard:`` or
    ``malformed:``, the sink's reject kinds)."""
    return rejected_event(intent, problem)
