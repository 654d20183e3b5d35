"""One order resting at the simulated venue, and its place in the queue at its price.

An order joins behind the visible size at its price. A public trade at its price consumes the
queue ahead first and only then fills it (:func:`trade_at_price`); a decrease of the level that
trades do not explain is cancels, which move it up (:func:`requeue`): ``risk_averse`` only when
the level shrinks below its position (hftbacktest's RiskAdverseQueueModel), ``proportional`` by
its share of the queue (cancels spread evenly over the level), ``front`` ignores the queue
(first in line, like the local exchange).
"""

from __future__ import annotations

from dataclasses import dataclass

from makerflow.backtest.venue_config import QueueModel
from makerflow.schemas.events import OrderStatus, Side


@dataclass(slots=True)
class SimOrder:
    client_order_id: str
    exchange_order_id: str
    side: Side
    price: float
    qty: float
    post_only: bool
    accepted_ts: int
    filled: float = 0.0
    ahead: float = 0.0
    """Visible quantity ahead of us at our price."""
    level_qty: float = 0.0
    """The level's visible quantity when we last looked."""
    traded: float = 0.0
    """Public quantity traded at our price since we last looked at the level."""
    status: OrderStatus = "ack"

    @property
    def remaining(self) -> float:
        return self.qty - self.filled


def trade_at_price(o: SimOrder, qty: float, model: QueueModel) -> float:
    """A public trade of ``qty`` at the order's price: how much of it reaches the order
    (may be <= 0: the queue ahead took it all). The queue ahead shrinks by the trade."""
    o.traded += qty
    if model == "front":
        return qty
    reach = qty - o.ahead
    o.ahead = max(o.ahead - qty, 0.0)
    return reach


def requeue(o: SimOrder, level: float, model: QueueModel) -> None:
    """The order's price level shows ``level`` now: what trades do not explain was cancels."""
    if model != "front":
        cancelled = o.level_qty - o.traded - level
        if cancelled > 0 and model == "proportional":
            # Cancels are spread over the whole level: the part ahead of us goes with
            # our share of it.
            behind = max(o.level_qty - o.traded - o.ahead, 0.0)
            total = o.ahead + behind
            if total > 0:
                o.ahead -= cancelled * o.ahead / total
        o.ahead = max(min(o.ahead, level), 0.0)
    o.level_qty = level
    o.traded = 0.0
