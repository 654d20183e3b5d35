"""Places whose answer was lost: kept, looked up by client id, and resolved when the venue
says what happened.

A lost place (timeout, 5xx, dropped connection) may be live at the venue, so it is never
re-sent. :class:`LostPlaces` keeps it until a look-up by client id finds it (its real state
is reported), or until the venue's receive window has passed and the venue still has no such
order: a request older than that window can no longer be accepted (Binance checks
``recvWindow`` when it processes a request), so the place never landed and is reported
``rejected`` (``not_placed``). A cancel asked for while the place is unknown is carried out
once it is found.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from makerflow import metrics
from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.exchange_config import ExchangeSinkConfig

if TYPE_CHECKING:
    from makerflow.sinks.exchange_executor import ExchangeExecutor


@dataclass
class Unknown:
    """A place whose answer was lost: the order may be live."""

    intent: OrderIntent
    price: float | None
    qty: float
    sent_ns: int
    checks: int = 0
    next_ns: int = 0
    cancel_wanted: bool = False


def unknown_event(u: Unknown, reason: str) -> OrderEvent:
    """The ``unknown`` order event of a lost place (its slot and funds stay taken)."""
    i = u.intent
    assert i.side is not None
    return OrderEvent(
        ts=i.ts,
        venue=i.venue,
        symbol=i.symbol,
        account=i.account,
        client_order_id=i.client_order_id or "",
        status="unknown",
        side=i.side,
        price=u.price,
        qty=u.qty,
        reason=reason,
    )


class LostPlaces:
    """The lost places of one executor, and their resolution."""

    def __init__(self, config: ExchangeSinkConfig) -> None:
        self.config = config
        self.orders: dict[str, Unknown] = {}
        self._lock: asyncio.Lock | None = None

    async def resolve(self, ex: ExchangeExecutor) -> list[OrderEvent]:
        """Look up every lost place that is due; return what the venue said about those it
        now knows, and ``rejected`` (``not_placed``) for those it can no longer get. One
        pass at a time (the background resolver and the sweep's look-ups share it)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._resolve_due(ex)

    async def _resolve_due(self, ex: ExchangeExecutor) -> list[OrderEvent]:
        cfg = self.config
        now = ex.now()
        due = [(cid, u) for cid, u in self.orders.items() if u.next_ns <= now]
        if not due:
            return []
        answers = await asyncio.gather(
            *(ex.lookup(u.intent.key, u.intent.symbol, cid) for cid, u in due)
        )
        # A request can be processed up to its receive window after it was signed; give
        # the answer's own timeouts on top.
        window_ns = (cfg.recv_window_ms + 2 * cfg.timeout_ms) * 1_000_000
        out: list[OrderEvent] = []
        for (cid, u), (found, err) in zip(due, answers, strict=True):
            venue = u.intent.venue
            if found is not None:
                self.orders.pop(cid, None)
                metrics.ORDERS_UNKNOWN.labels(venue=venue, resolution="found").inc()
                ev = ex.from_order(u.intent, found)
                out.append(ev)
                if u.cancel_wanted and ev.status in ("ack", "partial", "new"):
                    out += await ex.cancel(_cancel_of(u.intent))
            elif err is None and ex.now() - u.sent_ns > window_ns:
                self.orders.pop(cid, None)
                ex.forget(cid)
                metrics.ORDERS_UNKNOWN.labels(venue=venue, resolution="not_placed").inc()
                out.append(
                    ex.reject(
                        u.intent,
                        "not_placed",
                        "the venue has no order with this client id after its receive window "
                        f"({cfg.recv_window_ms} ms): the lost place never landed",
                    )
                )
            else:
                u.checks += 1
                step = cfg.resolve_interval_s * min(8, 2 ** min(u.checks, 3))
                u.next_ns = now + int(step * 1e9)
        return out


def _cancel_of(intent: OrderIntent) -> OrderIntent:
    return OrderIntent(
        ts=intent.ts,
        venue=intent.venue,
        symbol=intent.symbol,
        account=intent.account,
        action="cancel",
        client_order_id=intent.client_order_id,
        reason="cancel requested while the place was unknown",
    )
