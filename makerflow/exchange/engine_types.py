"""The matching engine's vocabulary: markets and their filters, orders, trades, the updates a
change produces, balances, and the venue's refusals (Binance's codes and messages)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

OrderSide = Literal["BUY", "SELL"]
OrderType = Literal["LIMIT", "MARKET", "LIMIT_MAKER"]
OrderStatusName = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"]
ExecType = Literal["NEW", "TRADE", "CANCELED", "EXPIRED", "REJECTED"]

ZERO = Decimal(0)


class EngineError(Exception):
    """A request the venue refuses. ``code`` and ``message`` are Binance's, so the HTTP layer
    answers exactly what the real venue would and ccxt maps it to the same error class."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


@dataclass(frozen=True)
class MarketSpec:
    """One spot market and its filters (Binance's PRICE_FILTER, LOT_SIZE, NOTIONAL)."""

    symbol: str
    """The venue's id, ``BTCUSDT``."""
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal = Decimal(9000)
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal(1_000_000)
    min_notional: Decimal = Decimal(5)
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")


@dataclass
class Order:
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: str
    price: Decimal
    """The limit price; zero for market orders."""
    orig_qty: Decimal
    time: int
    """Creation time, ms (engine clock)."""
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: OrderStatusName = "NEW"
    update_time: int = 0
    hold: Decimal = ZERO
    """What is still locked for this order (quote for buys, base for sells)."""

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True)
class Execution:
    """One of our trades."""

    trade_id: int
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: OrderSide
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool
    time: int


@dataclass(frozen=True)
class OrderUpdate:
    """A change of an order (Binance's ``executionReport``): the order after the change, what
    happened, and the trade when it was one."""

    order: Order
    exec_type: ExecType
    time: int
    execution: Execution | None = None
    reject_reason: str = "NONE"


@dataclass(frozen=True)
class Outcome:
    """Everything one call changed: order updates and the accounts whose balances moved."""

    updates: tuple[OrderUpdate, ...] = ()
    accounts: frozenset[str] = frozenset()


@dataclass
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO
