"""The matching engine's state and its read side: markets, books, orders, accounts and
balances, trades, the clock; the queries a venue answers.
:class:`~makerflow.exchange.engine.MatchingEngine` adds the orders and the public market that
change it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from decimal import Decimal

from makerflow.exchange.book import Book, BookSide
from makerflow.exchange.engine_types import ZERO, Balance, EngineError, Execution, MarketSpec, Order


class EngineState:
    """What the venue holds, and the queries on it (no mutation but the clock and deposits)."""

    def __init__(self, markets: Iterable[MarketSpec], *, start_time_ms: int = 0) -> None:
        self.markets: dict[str, MarketSpec] = {m.symbol: m for m in markets}
        self._books: dict[str, Book] = {s: Book() for s in self.markets}
        self._orders: dict[int, Order] = {}
        self._by_client: dict[tuple[str, str], Order] = {}
        self._open: dict[str, dict[int, Order]] = {}
        self._balances: dict[str, dict[str, Balance]] = {}
        self._trades: dict[str, list[Execution]] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self.time_ms = start_time_ms

    # --- clock and accounts -------------------------------------------------------------

    def set_time(self, time_ms: int) -> None:
        """Move the clock to the market data's event time; it never goes backwards."""
        self.time_ms = max(self.time_ms, time_ms)

    def add_account(self, account: str, balances: dict[str, Decimal] | None = None) -> None:
        self._balances.setdefault(account, {})
        self._open.setdefault(account, {})
        self._trades.setdefault(account, [])
        for asset, amount in (balances or {}).items():
            self.deposit(account, asset, amount)

    def deposit(self, account: str, asset: str, amount: Decimal) -> None:
        bal = self._balances[account].setdefault(asset, Balance())
        bal.free += amount

    def balances(self, account: str) -> dict[str, Balance]:
        self._require_account(account)
        return {a: Balance(b.free, b.locked) for a, b in self._balances[account].items()}

    def _balance(self, account: str, asset: str) -> Balance:
        return self._balances[account].setdefault(asset, Balance())

    def _require_account(self, account: str) -> None:
        if account not in self._balances:
            raise EngineError(-2015, "Invalid API-key, IP, or permissions for action.")

    # --- queries ----------------------------------------------------------------------

    def market(self, symbol: str) -> MarketSpec:
        spec = self.markets.get(symbol)
        if spec is None:
            raise EngineError(-1121, "Invalid symbol.")
        return spec

    def get_order(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order:
        self._require_account(account)
        order: Order | None = None
        if order_id is not None:
            order = self._orders.get(order_id)
        elif client_order_id is not None:
            order = self._by_client.get((account, client_order_id))
        if order is None or order.account != account or order.symbol != symbol:
            raise EngineError(-2013, "Order does not exist.")
        return order

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        self._require_account(account)
        orders = self._open[account].values()
        return sorted(
            (o for o in orders if symbol is None or o.symbol == symbol), key=lambda o: o.order_id
        )

    def all_orders(self, account: str, symbol: str) -> list[Order]:
        self._require_account(account)
        return sorted(
            (o for o in self._orders.values() if o.account == account and o.symbol == symbol),
            key=lambda o: o.order_id,
        )

    def my_trades(self, account: str, symbol: str) -> list[Execution]:
        self._require_account(account)
        return [t for t in self._trades[account] if t.symbol == symbol]

    def depth(
        self, symbol: str, limit: int = 100
    ) -> tuple[int, list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The book a participant sees: the public top of book merged with resting orders."""
        self.market(symbol)
        book = self._books[symbol]

        def side(
            internal: BookSide, ext_px: Decimal | None, ext_qty: Decimal
        ) -> list[tuple[Decimal, Decimal]]:
            levels: dict[Decimal, Decimal] = {}
            for px in internal.iter_best():
                levels[px] = sum((o.remaining for o in internal.levels[px]), ZERO)
            if ext_px is not None and ext_qty > 0:
                levels[ext_px] = levels.get(ext_px, ZERO) + ext_qty
            ordered = sorted(levels.items(), reverse=internal.descending)
            return ordered[:limit]

        return (
            book.update_id,
            side(book.bids, book.ext_bid, book.ext_bid_qty),
            side(book.asks, book.ext_ask, book.ext_ask_qty),
        )

    def level(self, symbol: str, price: Decimal) -> tuple[Decimal, Decimal]:
        """The visible (bid, ask) quantity at one price: resting orders plus the public top."""
        book = self._books[symbol]
        out = []
        for internal, ext_px, ext_qty in (
            (book.bids, book.ext_bid, book.ext_bid_qty),
            (book.asks, book.ext_ask, book.ext_ask_qty),
        ):
            qty = sum((o.remaining for o in internal.levels.get(price, ())), ZERO)
            if ext_px == price and ext_qty > 0:
                qty += ext_qty
            out.append(qty)
        return out[0], out[1]

    def top(
        self, symbol: str
    ) -> tuple[tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
        """The best visible bid and ask (price, quantity), each ``None`` when that side is
        empty."""
        book = self._books[symbol]
        bid_px = max(
            (
                p
                for p in (book.bids.best(), book.ext_bid if book.ext_bid_qty > 0 else None)
                if p is not None
            ),
            default=None,
        )
        ask_px = min(
            (
                p
                for p in (book.asks.best(), book.ext_ask if book.ext_ask_qty > 0 else None)
                if p is not None
            ),
            default=None,
        )
        bid = (bid_px, self.level(symbol, bid_px)[0]) if bid_px is not None else None
        ask = (ask_px, self.level(symbol, ask_px)[1]) if ask_px is not None else None
        return bid, ask

    def drain_touched(self, symbol: str) -> set[Decimal]:
        """The prices whose visible quantity may have changed since the last call, so a
        publisher diffs those levels instead of the whole book."""
        book = self._books[symbol]
        touched, book.touched = book.touched, set()
        return touched
