"""The rejected order event that answers a refused intent: one shape whoever refuses it (the
risk gate, the exchange sink's guards, the backtest's simulated venue), so every reader of
order events (the order state, the quoter) sees the same answer."""

from __future__ import annotations

import math

from makerflow.schemas.events import OrderEvent, OrderIntent


def rejected_event(intent: OrderIntent, reason: str, *, ts: int | None = None) -> OrderEvent:
    """The ``rejected`` order event that answers a refused ``intent`` (by the risk gate, the
    sink's guards or the venue), at ``ts`` (default: the intent's own time). A quantity that
    is missing or not finite is reported as 0, so the event itself is always valid."""
    qty = intent.qty if intent.qty is not None and math.isfinite(intent.qty) else 0.0
    return OrderEvent(
        ts=intent.ts if ts is None else ts,
        venue=intent.venue,
        symbol=intent.symbol,
        account=intent.account,
        client_order_id=intent.client_order_id or "",
        status="rejected",
        side=intent.side or "buy",
        price=intent.price,
        qty=qty,
        reason=reason,
    )
