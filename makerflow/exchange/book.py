"""The internal book of one market: price levels sorted best first, FIFO queues per level,
the public market's top of book, and the prices a change touched."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from makerflow.exchange.engine_types import ZERO, Order


@dataclass
class BookSide:
    """One side of the internal book: price levels sorted best first, FIFO queues per level."""

    descending: bool
    prices: list[Decimal] = field(default_factory=list)
    """Sorted ascending; for bids the best is the last."""
    levels: dict[Decimal, deque[Order]] = field(default_factory=dict)

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.descending else self.prices[0]

    def add(self, order: Order) -> None:
        q = self.levels.get(order.price)
        if q is None:
            q = self.levels[order.price] = deque()
            bisect.insort(self.prices, order.price)
        q.append(order)

    def remove(self, order: Order) -> None:
        q = self.levels.get(order.price)
        if q is None:
            return
        try:
            q.remove(order)
        except ValueError:
            return
        if not q:
            self._drop_level(order.price)

    def _drop_level(self, price: Decimal) -> None:
        del self.levels[price]
        i = bisect.bisect_left(self.prices, price)
        del self.prices[i]

    def iter_best(self) -> Iterable[Decimal]:
        return list(reversed(self.prices)) if self.descending else list(self.prices)

    def pop_empty(self, price: Decimal) -> None:
        q = self.levels.get(price)
        if q is not None and not q:
            self._drop_level(price)


@dataclass
class Book:
    bids: BookSide = field(default_factory=lambda: BookSide(descending=True))
    asks: BookSide = field(default_factory=lambda: BookSide(descending=False))
    # The public market's top of book, and how much of it our takers already consumed.
    ext_bid: Decimal | None = None
    ext_bid_qty: Decimal = ZERO
    ext_ask: Decimal | None = None
    ext_ask_qty: Decimal = ZERO
    update_id: int = 0
    touched: set[Decimal] = field(default_factory=set)
    """Prices whose visible quantity may have changed since the last :meth:`drain_touched`."""


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return step == 0 or (value / step) == (value / step).to_integral_value()
