"""The records of the order state: the states an order goes through and the changes between
them, the ranks of the venue's words, an order's record, what an event did to it, and the
state's snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from makerflow.schemas.events import Fill, Side, market_key

OrderStateName = Literal[
    "pending_new",
    "unknown",
    "open",
    "partially_filled",
    "pending_cancel",
    "filled",
    "canceled",
    "rejected",
    "expired",
]

TERMINAL: frozenset[OrderStateName] = frozenset(("filled", "canceled", "rejected", "expired"))


def _states(*names: OrderStateName) -> frozenset[OrderStateName]:
    return frozenset(names)


TRANSITIONS: dict[OrderStateName, frozenset[OrderStateName]] = {
    "pending_new": _states("unknown", "open", "partially_filled", "pending_cancel") | TERMINAL,
    "unknown": _states("open", "partially_filled", "pending_cancel") | TERMINAL,
    "open": _states("partially_filled", "pending_cancel") | TERMINAL,
    "partially_filled": _states("pending_cancel") | TERMINAL,
    "pending_cancel": TERMINAL,
    "filled": _states(),
    # The quantity correction described in the module docstring.
    "canceled": _states("filled"),
    "expired": _states("filled"),
    "rejected": _states("filled"),
}
"""Every change of state an order may go through; a state also 'moves' to itself."""

# Venue ranks: what the venue (or the sink) last said about a live order, merged by max.
PENDING_RANK, UNKNOWN_RANK, OPEN_RANK = 0, 1, 2
VENUE_RANK: dict[str, int] = {
    "unknown": UNKNOWN_RANK,
    "new": OPEN_RANK,
    "ack": OPEN_RANK,
    "partial": OPEN_RANK,
}
WIRE_TERMINAL: dict[str, OrderStateName] = {
    "filled": "filled",
    "canceled": "canceled",
    "rejected": "rejected",
    "expired": "expired",
}
TERMINAL_STRENGTH: dict[str, int] = {"filled": 3, "canceled": 2, "expired": 1, "rejected": 0}


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """One order as the state knows it. Immutable: every change makes a new record."""

    client_order_id: str
    venue: str
    symbol: str
    account: str
    side: Side
    price: float | None
    qty: float | None
    """``None`` when no input has said the order's size yet."""
    state: OrderStateName
    filled: float = 0.0
    """max(cumulative filled from order events, sum of applied fills)."""
    sent: bool = False
    """An intent of ours placed it; ``False`` for an orphan (or an order adopted later)."""
    adopted: bool = False
    placed_ts: int | None = None
    """Event time of the place intent."""
    last_ts: int = 0
    """Latest event time of anything applied to the order."""
    exchange_order_id: str | None = None
    reason: str = ""
    """The reason given with the strongest word the venue (or the sink) said of the order."""
    # The merged facts the state is derived from (see the module docstring).
    rank: int = PENDING_RANK
    terminals: tuple[OrderStateName, ...] = ()
    cancel_requested: bool = False
    event_filled: float = 0.0
    fills: tuple[tuple[str, float], ...] = ()
    """(trade id, qty) of every fill applied to this order, sorted by trade id."""
    reason_rank: int = -1

    @property
    def market(self) -> str:
        return market_key(self.venue, self.symbol)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def remaining(self) -> float:
        """What may still trade: 0 for a terminal order or one of unknown size."""
        if self.terminal or self.qty is None:
            return 0.0
        return max(self.qty - self.filled, 0.0)


@dataclass(frozen=True, slots=True)
class Transition:
    """What one input did to one order: its state before (``None``: new record) and now."""

    previous: OrderStateName | None
    order: Order

    @property
    def changed_state(self) -> bool:
        return self.previous != self.order.state


@dataclass(frozen=True, slots=True)
class FillEffect:
    """A fill applied for the first time. ``order_filled_delta`` is how much it raised its
    order's filled quantity (0 when an order event had already reported it)."""

    fill: Fill
    order: Order | None
    previous: OrderStateName | None
    order_filled_delta: float


@dataclass(frozen=True, slots=True)
class Exposure:
    """Remaining quantity and notional of open orders (including unknown and pending ones)."""

    buy_qty: float = 0.0
    sell_qty: float = 0.0
    buy_notional: float = 0.0
    sell_notional: float = 0.0
    orders: int = 0


class OrderStateSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an :class:`OrderState` needs to resume (for Bytewax recovery)."""

    orders: tuple[Order, ...]
    terminal_ids: tuple[str, ...]
    tombstones: tuple[str, ...]
    trade_ids: tuple[tuple[str, str], ...]
    loose: tuple[tuple[str, tuple[Fill, ...]], ...] = ()
    conflicts: int = 0
