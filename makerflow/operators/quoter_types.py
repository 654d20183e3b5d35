"""What a :class:`~makerflow.operators.quoter.Quoter` takes, keeps and gives: the error for an
event it cannot use, its view of a live order, its snapshot and its output."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from makerflow.operators.inventory import InventorySnapshot
from makerflow.operators.order_records import OrderStateName, OrderStateSnapshot
from makerflow.schemas.events import (
    Alert,
    InventoryCorrection,
    OrderIntent,
    QuoteLadder,
    Side,
    Tick,
)


class QuoterInputError(ValueError):
    """An event the quoter cannot use (bad prices, bad parameters); it becomes a dead letter."""


class LiveOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One of our open orders as the quoter sees it: a read-only view of the order state's
    record (:class:`~makerflow.operators.order_records.Order`) with the ladder slot and the
    quoter's own cancel timer."""

    client_order_id: str
    side: Side
    level: int
    """The ladder level, from the client id; -1 for an order whose id names none."""
    price: float
    qty: float
    filled: float = 0.0
    placed_ts: int
    acked: bool = False
    cancel_ts: int | None = None
    """When a cancel was last requested; the order no longer counts as a quote."""
    cancels_sent: int = 0
    state: OrderStateName = "pending_new"


class QuoterSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a quoter needs to resume: small, immutable, picklable."""

    market: str
    overrides: dict[str, Any]
    session: str
    seq: int
    inventory: InventorySnapshot
    orders: OrderStateSnapshot
    cancels: tuple[tuple[str, int, int], ...]
    """(client id, last cancel ts, cancels sent) of the cancels the quoter is waiting on."""
    vol: tuple[Any, ...]
    """:meth:`GridVolatility.state`."""
    risk_halts: tuple[str, ...]
    control_halts: tuple[str, ...]
    last_tick: Tick | None
    index: tuple[int, float] | None
    blocked: tuple[tuple[str, int, int], ...]
    last_ladder: tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]] | None
    intensity: tuple[Any, ...] | None = None
    """:meth:`TradeIntensity.state`."""


@dataclass(frozen=True, slots=True)
class QuoterOutput:
    """What one event made the quoter do."""

    intents: tuple[OrderIntent, ...] = ()
    ladder: QuoteLadder | None = None
    alerts: tuple[Alert, ...] = ()
    """Cancels the venue has not confirmed after the retries."""
    corrections: tuple[InventoryCorrection, ...] = ()
    """The position re-anchored to the venue's balance."""


NOTHING = QuoterOutput()


def output_of(intents: list[OrderIntent]) -> QuoterOutput:
    return QuoterOutput(intents=tuple(intents)) if intents else NOTHING


def finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0
