"""A pure spot matching engine: accounts, holds, price-time priority, fees.

No I/O and no clock reads: time is whatever the caller last set with :meth:`MatchingEngine.
set_time` (the event time of the market data being replayed), so a replay gives the same fills
on every run. Prices and quantities are :class:`~decimal.Decimal` because validation against
tick and lot must be exact, as it is on the real venue.

Liquidity has two origins. Participants' resting orders form the internal book and match each
other by price, then time. The public market (replayed or simulated) is outside: its top of book
(:meth:`MatchingEngine.on_book_top`) is liquidity a taker order may consume, and its trades
(:meth:`MatchingEngine.on_public_trade`) and moves through our prices fill our resting orders as
maker, which is how market flow hits our quotes.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Literal

from makerflow.exchange.book import Book, BookSide, is_multiple
from makerflow.exchange.engine_state import EngineState
from makerflow.exchange.engine_types import (
    INSUFFICIENT_BALANCE,
    ZERO,
    Balance,
    EngineError,
    ExecType,
    Execution,
    MarketSpec,
    Order,
    OrderSide,
    OrderStatusName,
    OrderType,
    OrderUpdate,
    Outcome,
)

__all__ = [
    "INSUFFICIENT_BALANCE",
    "ZERO",
    "Balance",
    "EngineError",
    "ExecType",
    "Execution",
    "MarketSpec",
    "MatchingEngine",
    "Order",
    "OrderSide",
    "OrderStatusName",
    "OrderType",
    "OrderUpdate",
    "Outcome",
]


class MatchingEngine(EngineState):
    """The venue's state. Every mutating method returns an :class:`Outcome`."""

    # --- orders -----------------------------------------------------------------------

    def place(
        self,
        account: str,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        qty: Decimal,
        price: Decimal | None = None,
        *,
        client_order_id: str,
        time_in_force: str = "GTC",
    ) -> tuple[Order, Outcome]:
        """Validate, hold, match and (for a limit) rest an order. Raises :class:`EngineError`
        with Binance's code and message when the venue would refuse it."""
        self._require_account(account)
        spec = self.market(symbol)
        # Binance: a client id is unique among *open* orders only; once its order is closed
        # the id may be used again (and a look-up by it then finds the newest order).
        used = self._by_client.get((account, client_order_id))
        if used is not None and used.is_open:
            raise EngineError(-2010, "Duplicate order sent.")
        px = self._validate(spec, order_type, qty, price)
        book = self._books[symbol]
        if order_type == "LIMIT_MAKER" and self._would_take(book, side, px):
            raise EngineError(-2010, "Order would immediately match and take.")
        hold_asset, hold = self._required_hold(spec, book, side, order_type, qty, px)
        bal = self._balance(account, hold_asset)
        if bal.free < hold:
            raise EngineError(-2010, INSUFFICIENT_BALANCE)
        bal.free -= hold
        bal.locked += hold
        order = Order(
            order_id=next(self._order_ids),
            client_order_id=client_order_id,
            account=account,
            symbol=symbol,
            side=side,
            type=order_type,
            time_in_force=time_in_force if time_in_force in ("GTC", "IOC", "FOK") else "GTC",
            price=px,
            orig_qty=qty,
            time=self.time_ms,
            update_time=self.time_ms,
            hold=hold,
        )
        self._orders[order.order_id] = order
        self._by_client[(account, client_order_id)] = order
        updates: list[OrderUpdate] = [OrderUpdate(self._copy(order), "NEW", self.time_ms)]
        accounts = {account}
        updates += self._take(spec, book, order, accounts)
        if order.remaining > 0:
            if order_type == "MARKET" or time_in_force in ("IOC", "FOK"):
                self._close(order, "EXPIRED")
                updates.append(OrderUpdate(self._copy(order), "EXPIRED", self.time_ms))
            else:
                (book.bids if side == "BUY" else book.asks).add(order)
                book.touched.add(px)
                self._open[account][order.order_id] = order
        return order, Outcome(tuple(updates), frozenset(accounts))

    def cancel(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> tuple[Order, Outcome]:
        return self._end(account, symbol, order_id, client_order_id, "CANCELED")

    def expire(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> tuple[Order, Outcome]:
        """The venue ends an open order on its own (Binance: status and execution type
        ``EXPIRED``): its rest leaves the book and its hold is released."""
        return self._end(account, symbol, order_id, client_order_id, "EXPIRED")

    def _end(
        self,
        account: str,
        symbol: str,
        order_id: int | None,
        client_order_id: str | None,
        status: Literal["CANCELED", "EXPIRED"],
    ) -> tuple[Order, Outcome]:
        """An open order leaves the book with ``status``; its hold is released."""
        order = self.get_order(account, symbol, order_id, client_order_id)
        if not order.is_open:
            raise EngineError(-2011, "Unknown order sent.")
        book = self._books[symbol]
        (book.bids if order.side == "BUY" else book.asks).remove(order)
        book.touched.add(order.price)
        self._close(order, status)
        update = OrderUpdate(self._copy(order), status, self.time_ms)
        return order, Outcome((update,), frozenset({account}))

    def expire_older_than(self, lifetime_ms: int) -> Outcome:
        """Expire every open order that has rested ``lifetime_ms`` or longer (engine time):
        a venue-side order lifetime."""
        updates: list[OrderUpdate] = []
        accounts: set[str] = set()
        for account, orders in self._open.items():
            for o in sorted(orders.values(), key=lambda o: o.order_id):
                if self.time_ms - o.time >= lifetime_ms:
                    _, out = self.expire(account, o.symbol, o.order_id, None)
                    updates += out.updates
                    accounts.add(account)
        return Outcome(tuple(updates), frozenset(accounts))

    def cancel_all(self, account: str, symbol: str) -> tuple[list[Order], Outcome]:
        orders = self.open_orders(account, symbol)
        if not orders:
            raise EngineError(-2011, "Unknown order sent.")
        updates: list[OrderUpdate] = []
        for o in orders:
            _, out = self.cancel(account, symbol, o.order_id, None)
            updates += out.updates
        return orders, Outcome(tuple(updates), frozenset({account}))

    # --- the public market ------------------------------------------------------------

    def on_book_top(
        self, symbol: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal
    ) -> Outcome:
        """The public market's best bid and ask changed. Our resting orders the market moved
        through are filled as maker at their own price, up to the public quantity there."""
        spec = self.market(symbol)
        book = self._books[symbol]
        book.update_id += 1
        book.touched.update(p for p in (book.ext_bid, book.ext_ask, bid, ask) if p is not None)
        book.ext_bid, book.ext_bid_qty = bid, bid_qty
        book.ext_ask, book.ext_ask_qty = ask, ask_qty
        accounts: set[str] = set()
        updates: list[OrderUpdate] = []
        # A public ask at or below our bid means a seller crossed into us.
        updates += self._passive_fills(spec, book.bids, ask, ask_qty, "BUY", accounts)
        updates += self._passive_fills(spec, book.asks, bid, bid_qty, "SELL", accounts)
        # Consumed public liquidity is not there any more for the next taker.
        return Outcome(tuple(updates), frozenset(accounts))

    def on_public_trade(
        self, symbol: str, price: Decimal, qty: Decimal, taker_side: OrderSide
    ) -> Outcome:
        """A public trade: a taker selling at ``price`` fills our bids at or above it (buying:
        our asks at or below), best first, up to its quantity."""
        spec = self.market(symbol)
        book = self._books[symbol]
        accounts: set[str] = set()
        if taker_side == "SELL":
            updates = self._passive_fills(spec, book.bids, price, qty, "BUY", accounts)
        else:
            updates = self._passive_fills(spec, book.asks, price, qty, "SELL", accounts)
        return Outcome(tuple(updates), frozenset(accounts))

    # --- internals --------------------------------------------------------------------

    def _validate(
        self, spec: MarketSpec, order_type: OrderType, qty: Decimal, price: Decimal | None
    ) -> Decimal:
        if (
            qty <= 0
            or not is_multiple(qty, spec.step_size)
            or not (spec.min_qty <= qty <= spec.max_qty)
        ):
            raise EngineError(-1013, "Filter failure: LOT_SIZE")
        if order_type == "MARKET":
            return ZERO
        if price is None or price <= 0:
            raise EngineError(
                -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed."
            )
        if not is_multiple(price, spec.tick_size) or not (
            spec.min_price <= price <= spec.max_price
        ):
            raise EngineError(-1013, "Filter failure: PRICE_FILTER")
        if price * qty < spec.min_notional:
            raise EngineError(-1013, "Filter failure: NOTIONAL")
        return price

    def _would_take(self, book: Book, side: OrderSide, px: Decimal) -> bool:
        if side == "BUY":
            best = book.asks.best()
            return (best is not None and best <= px) or (
                book.ext_ask is not None and book.ext_ask_qty > 0 and book.ext_ask <= px
            )
        best = book.bids.best()
        return (best is not None and best >= px) or (
            book.ext_bid is not None and book.ext_bid_qty > 0 and book.ext_bid >= px
        )

    def _required_hold(
        self,
        spec: MarketSpec,
        book: Book,
        side: OrderSide,
        order_type: OrderType,
        qty: Decimal,
        px: Decimal,
    ) -> tuple[str, Decimal]:
        if side == "SELL":
            return spec.base, qty
        if order_type != "MARKET":
            return spec.quote, px * qty
        # A market buy holds what walking the visible book would cost.
        cost, left = ZERO, qty
        for level_px, level_qty in self.depth(spec.symbol, 1000)[2]:
            take = min(left, level_qty)
            cost += take * level_px
            left -= take
            if left <= 0:
                break
        if cost == 0:
            raise EngineError(-2010, "Market has insufficient liquidity.")
        return spec.quote, cost

    def _take(
        self, spec: MarketSpec, book: Book, taker: Order, accounts: set[str]
    ) -> list[OrderUpdate]:
        """Match an incoming order: internal resting orders by price then time, and the public
        top of book when it is at least as good."""
        updates: list[OrderUpdate] = []
        limit = taker.price if taker.type != "MARKET" else None
        resting = book.asks if taker.side == "BUY" else book.bids
        while taker.remaining > 0:
            best_int = resting.best()
            ext_px = book.ext_ask if taker.side == "BUY" else book.ext_bid
            ext_qty = book.ext_ask_qty if taker.side == "BUY" else book.ext_bid_qty
            if ext_qty <= 0:
                ext_px = None

            def better(a: Decimal, b: Decimal) -> bool:
                return a <= b if taker.side == "BUY" else a >= b

            use_internal = best_int is not None and (ext_px is None or better(best_int, ext_px))
            px = best_int if use_internal else ext_px
            if px is None or (limit is not None and not better(px, limit)):
                break
            if use_internal:
                queue = resting.levels[px]
                maker = queue[0]
                qty = min(taker.remaining, maker.remaining)
                updates.append(self._execute(spec, maker, px, qty, is_maker=True))
                accounts.add(maker.account)
                if not maker.is_open:
                    queue.popleft()
                    self._open[maker.account].pop(maker.order_id, None)
                    resting.pop_empty(px)
            else:
                qty = min(taker.remaining, ext_qty)
                if taker.side == "BUY":
                    book.ext_ask_qty -= qty
                else:
                    book.ext_bid_qty -= qty
            updates.append(self._execute(spec, taker, px, qty, is_maker=False))
        return updates

    def _passive_fills(
        self,
        spec: MarketSpec,
        resting: BookSide,
        through: Decimal,
        available: Decimal,
        side: OrderSide,
        accounts: set[str],
    ) -> list[OrderUpdate]:
        updates: list[OrderUpdate] = []
        left = available
        # Best level first, and only as deep as the market reaches: a public event costs
        # O(levels it fills), not O(book).
        while left > 0:
            px = resting.best()
            if px is None or not (px >= through if side == "BUY" else px <= through):
                break
            queue = resting.levels[px]
            while queue and left > 0:
                order = queue[0]
                qty = self._round_lot(spec, min(order.remaining, left))
                if qty <= 0:
                    left = ZERO
                    break
                updates.append(self._execute(spec, order, px, qty, is_maker=True))
                accounts.add(order.account)
                left -= qty
                if not order.is_open:
                    queue.popleft()
                    self._open[order.account].pop(order.order_id, None)
            if queue:
                break  # the public quantity ran out inside this level
            resting.pop_empty(px)
        return updates

    @staticmethod
    def _round_lot(spec: MarketSpec, qty: Decimal) -> Decimal:
        if spec.step_size == 0:
            return qty
        return (qty / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size

    def _execute(
        self, spec: MarketSpec, order: Order, px: Decimal, qty: Decimal, *, is_maker: bool
    ) -> OrderUpdate:
        """Settle one trade of ``order``: release its hold, move the assets, charge the fee in
        the asset received (Binance spot's rule)."""
        quote_qty = px * qty
        # The level traded at changes (a resting order's, or the public top's).
        self._books[spec.symbol].touched.add(px)
        rate = spec.maker_fee if is_maker else spec.taker_fee
        acct = order.account
        base, quote = self._balance(acct, spec.base), self._balance(acct, spec.quote)
        if order.side == "BUY":
            release = min(order.hold, (order.price if order.type != "MARKET" else px) * qty)
            if order.remaining == qty:
                release = order.hold  # the last fill frees whatever is left of the hold
            order.hold -= release
            quote.locked -= release
            quote.free += release - quote_qty
            fee, fee_asset = qty * rate, spec.base
            base.free += qty - fee
        else:
            order.hold -= qty
            base.locked -= qty
            fee, fee_asset = quote_qty * rate, spec.quote
            quote.free += quote_qty - fee
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.update_time = self.time_ms
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        execution = Execution(
            trade_id=next(self._trade_ids),
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            account=acct,
            symbol=spec.symbol,
            side=order.side,
            price=px,
            qty=qty,
            quote_qty=quote_qty,
            commission=fee,
            commission_asset=fee_asset,
            is_maker=is_maker,
            time=self.time_ms,
        )
        self._trades[acct].append(execution)
        if order.status == "FILLED":
            self._open[acct].pop(order.order_id, None)
        return OrderUpdate(self._copy(order), "TRADE", self.time_ms, execution)

    def _close(self, order: Order, status: OrderStatusName) -> None:
        spec = self.markets[order.symbol]
        asset = spec.quote if order.side == "BUY" else spec.base
        bal = self._balance(order.account, asset)
        bal.locked -= order.hold
        bal.free += order.hold
        order.hold = ZERO
        order.status = status
        order.update_time = self.time_ms
        self._open[order.account].pop(order.order_id, None)

    @staticmethod
    def _copy(order: Order) -> Order:
        return Order(**{f: getattr(order, f) for f in order.__dataclass_fields__})
