"""The simulated venue's checks of an order's price and size: the tick and lot grids, the
minimum quantity and the minimum notional of the market's
:class:`~makerflow.operators.ladder.MarketSpec`."""

from __future__ import annotations

import math

from makerflow.operators.ladder import MarketSpec
from makerflow.schemas.events import OrderIntent

GRID_EPS = 1e-6
"""How far off the grid (in grid steps) a float price or quantity may sit and still be on it."""


def order_problem(intent: OrderIntent, spec: MarketSpec) -> str | None:
    """Why the venue refuses a place ``intent`` (the reject reason), or ``None``."""
    qty, price = intent.qty, intent.price
    if intent.side is None or qty is None or not (math.isfinite(qty) and qty > 0):
        return f"invalid_order: side {intent.side} qty {qty}"
    if not on_grid(qty, spec.lot_size) or qty < spec.min_qty * (1 - 1e-9):
        return f"invalid_order: LOT_SIZE (qty {qty}, lot {spec.lot_size}, min {spec.min_qty})"
    if intent.order_type == "market":
        return None
    if price is None or not (math.isfinite(price) and price > 0):
        return f"invalid_order: price {price}"
    if not on_grid(price, spec.tick_size):
        return f"invalid_order: PRICE_FILTER (price {price}, tick {spec.tick_size})"
    if price * qty < spec.min_notional * (1 - 1e-9):
        return f"min_notional: notional {price * qty:.8f} < minimum {spec.min_notional}"
    return None


def on_grid(x: float, step: float) -> bool:
    n = x / step
    return abs(n - round(n)) <= GRID_EPS
