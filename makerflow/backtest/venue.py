"""The simulated venue of a backtest: our orders against a replayed public book, in event time.

Pure (no I/O, no clock): the caller passes the venue time of every call and the public book
(the :class:`~makerflow.operators.book.OrderBook` the ticks logic keeps), and gets back
:class:`Report` s (order events, fills, balances) stamped with the venue time they happened
and the time they reach us (``deliver_ts``, after the report latency).

What it models:

* **Latency.** An order sent at ``t`` reaches the venue at ``t + entry latency``; a cancel at
  ``t + cancel latency`` (the order stays fillable until then); every report reaches us after
  the report latency. Each latency is a constant or drawn from a recorded distribution with
  a seed (:class:`Latency`), one random stream per kind, so runs repeat exactly.
* **Queue position.** An order joins behind the visible size at its price; trades at its
  price and cancels ahead of it move it up, by the chosen queue model (see
  :mod:`~makerflow.backtest.venue_queue`). A trade through its price, or the opposite side of
  the book moving to or through it, fills what is left.
* **Fees** (maker and taker rates, charged in the quote asset), **post-only rejects** (a
  post-only order that would take is refused), **precision and minimum notional** (price on
  the tick grid, quantity on the lot grid, at least ``min_qty`` and ``min_notional``, as in the
  market's :class:`~makerflow.operators.ladder.MarketSpec`), balances (a spot account: an
  order needs the funds it could use).

What it does not model: our own orders' impact on the public book (a take does not remove
the liquidity from the replay, and a resting order adds nothing others see), hidden
liquidity, and the exchange's matching of the replay's own orders (we only see its results).

The settings and latency draws are :mod:`~makerflow.backtest.venue_config`, the queue position
of one order :mod:`~makerflow.backtest.venue_queue`, the checks of an order's price and size
:mod:`~makerflow.backtest.venue_rules`; this module is the venue that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from makerflow.backtest.venue_config import (
    DEFAULT_TAKER_FEE,
    NS_PER_MS,
    Latency,
    QueueModel,
    VenueConfig,
)
from makerflow.backtest.venue_queue import SimOrder, requeue, trade_at_price
from makerflow.backtest.venue_rules import GRID_EPS, order_problem
from makerflow.operators.book import OrderBook
from makerflow.operators.ladder import MarketSpec
from makerflow.operators.rejections import rejected_event
from makerflow.schemas.events import (
    BalanceSnapshot,
    Fill,
    OrderEvent,
    OrderIntent,
    OrderStatus,
    Side,
    Trade,
)
from makerflow.schemas.scopes import symbol_assets

# Read through this module by the engine, the settings and the tests.
__all__ = [
    "DEFAULT_TAKER_FEE",
    "NS_PER_MS",
    "Arrival",
    "Latency",
    "QueueModel",
    "Report",
    "SimOrder",
    "SimVenue",
    "VenueConfig",
]


@dataclass(frozen=True, slots=True)
class Report:
    """Something the venue tells us: ``event`` happened at venue time ``event.ts`` and reaches
    us at ``deliver_ts``."""

    deliver_ts: int
    event: OrderEvent | Fill | BalanceSnapshot


@dataclass(slots=True)
class Arrival:
    """An intent on its way to the venue: what :meth:`SimVenue.send` schedules."""

    ts: int
    intent: OrderIntent


@dataclass
class Balances:
    base: float
    quote: float
    counts: dict[str, int] = field(default_factory=dict)


class SimVenue:
    """One market of the simulated venue for one account."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        account: str,
        spec: MarketSpec,
        config: VenueConfig,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.account = account
        self.spec = spec
        self.config = config
        self.base_asset, self.quote_asset = symbol_assets(symbol)
        seed = f"{config.seed}|{venue}|{symbol}|{account}"
        self.entry = Latency(config.entry_latency_ms, config.entry_latency_samples_ms, seed + "|e")
        self.cancel = Latency(
            config.cancel_latency_ms, config.cancel_latency_samples_ms, seed + "|c"
        )
        self.report = Latency(
            config.report_latency_ms, config.report_latency_samples_ms, seed + "|r"
        )
        self.orders: dict[str, SimOrder] = {}
        """Open orders by client id, in arrival order."""
        self.closed: dict[str, SimOrder] = {}
        self.base = config.initial_base
        self.quote = config.initial_quote
        self._order_ids = 0
        self._trade_ids = 0
        self.fills = 0
        self.maker_volume = 0.0
        self.fees = 0.0

    # --- our side -------------------------------------------------------------------------

    def send(self, now: int, intent: OrderIntent) -> Arrival:
        """``intent`` leaves us at ``now``; when it reaches the venue (hand it to
        :meth:`arrive` then)."""
        latency = self.cancel.draw() if intent.action != "place" else self.entry.draw()
        return Arrival(now + latency, intent)

    def arrive(self, arrival: Arrival, book: OrderBook) -> list[Report]:
        """The venue acts on an intent at ``arrival.ts`` against the public ``book``."""
        intent, ts = arrival.intent, arrival.ts
        if intent.action == "place":
            return self._place(ts, intent, book)
        if intent.action == "cancel":
            return self._cancel(ts, intent.client_order_id or "")
        out: list[Report] = []
        for cid in list(self.orders):
            out += self._cancel(ts, cid)
        return out

    def initial_balances(self, ts: int) -> list[Report]:
        return self._balances(ts, self._deliver(ts))

    # --- the public market ----------------------------------------------------------------

    def on_trade(self, tr: Trade, ts: int | None = None) -> list[Report]:
        """A public trade at venue time ``ts`` (default ``tr.ts``): the taker sold into bids
        at or above its price, or bought asks at or below it."""
        if not self.orders:
            return []
        at = tr.ts if ts is None else ts
        out: list[Report] = []
        hits: Side = "buy" if tr.side == "sell" else "sell"
        for o in list(self.orders.values()):
            if o.side != hits:
                continue
            through = tr.price < o.price if hits == "buy" else tr.price > o.price
            if through:
                out += self._fill(at, o, o.remaining)
            elif tr.price == o.price:
                reach = trade_at_price(o, tr.qty, self.config.queue_model)
                if reach > 0:
                    out += self._fill(at, o, min(reach, o.remaining))
        return out

    def on_book(self, ts: int, book: OrderBook) -> list[Report]:
        """The public book changed at venue time ``ts``: move queues, fill what it crossed."""
        if not self.orders:
            return []
        out: list[Report] = []
        best_bid, best_ask = book.best_bid, book.best_ask
        for o in list(self.orders.values()):
            if o.side == "buy":
                if best_ask is not None and best_ask[0] <= o.price:
                    out += self._fill(ts, o, o.remaining)
                    continue
                level = book.bids.qty.get(o.price, 0.0)
            else:
                if best_bid is not None and best_bid[0] >= o.price:
                    out += self._fill(ts, o, o.remaining)
                    continue
                level = book.asks.qty.get(-o.price, 0.0)
            requeue(o, level, self.config.queue_model)
        return out

    # --- internals ------------------------------------------------------------------------

    def _deliver(self, ts: int) -> int:
        return ts + self.report.draw()

    def _event(self, ts: int, o: SimOrder, status: OrderStatus, reason: str = "") -> OrderEvent:
        return OrderEvent(
            ts=ts,
            venue=self.venue,
            symbol=self.symbol,
            account=self.account,
            client_order_id=o.client_order_id,
            exchange_order_id=o.exchange_order_id,
            status=status,
            side=o.side,
            price=o.price,
            qty=o.qty,
            filled_qty=o.filled,
            reason=reason,
        )

    def _reject(self, ts: int, intent: OrderIntent, reason: str) -> list[Report]:
        return [Report(self._deliver(ts), rejected_event(intent, reason, ts=ts))]

    def _place(self, ts: int, intent: OrderIntent, book: OrderBook) -> list[Report]:
        cid = intent.client_order_id or ""
        if cid in self.orders or cid in self.closed:
            return self._reject(ts, intent, "duplicate: client order id already used")
        problem = order_problem(intent, self.spec)
        if problem is not None:
            return self._reject(ts, intent, problem)
        assert intent.side is not None and intent.qty is not None
        side, qty = intent.side, intent.qty
        opposite = book.best_ask if side == "buy" else book.best_bid
        limit = intent.price if intent.order_type == "limit" else None
        crosses = opposite is not None and (
            limit is None or (limit >= opposite[0] if side == "buy" else limit <= opposite[0])
        )
        if crosses and intent.post_only and intent.order_type == "limit":
            return self._reject(ts, intent, "post_only: order would immediately match and take")
        valuation = limit if limit is not None else (opposite[0] if opposite else 0.0)
        if self.config.check_balances and not self._affordable(side, qty, valuation):
            return self._reject(ts, intent, "insufficient_balance: account cannot pay for it")
        self._order_ids += 1
        o = SimOrder(
            client_order_id=cid,
            exchange_order_id=str(self._order_ids),
            side=side,
            price=limit if limit is not None else 0.0,
            qty=qty,
            post_only=intent.post_only,
            accepted_ts=ts,
        )
        self.orders[cid] = o
        out = [Report(self._deliver(ts), self._event(ts, o, "ack"))]
        if crosses:
            out += self._take(ts, o, book)
            if o.remaining > self.spec.lot_size / 2 and limit is None:
                del self.orders[cid]
                o.status = "expired"
                self.closed[cid] = o
                out.append(Report(self._deliver(ts), self._event(ts, o, "expired")))
        if cid in self.orders:
            level = (
                book.bids.qty.get(o.price, 0.0) if side == "buy" else book.asks.qty.get(-o.price)
            ) or 0.0
            o.ahead = level
            o.level_qty = level
        return out

    def _affordable(self, side: Side, qty: float, price: float) -> bool:
        if side == "sell":
            held = sum(o.remaining for o in self.orders.values() if o.side == "sell")
            return self.base - held >= qty * (1 - 1e-12)
        held = sum(o.remaining * o.price for o in self.orders.values() if o.side == "buy")
        return self.quote - held >= qty * price * (1 + self.config.taker_rate)

    def _take(self, ts: int, o: SimOrder, book: OrderBook) -> list[Report]:
        """Walk the visible opposite side up to the order's limit, as a taker."""
        levels = book.asks.levels(50) if o.side == "buy" else book.bids.levels(50)
        out: list[Report] = []
        for px, avail in levels:
            if o.remaining <= self.spec.lot_size / 2:
                break
            if o.price and (px > o.price if o.side == "buy" else px < o.price):
                break
            out += self._fill(ts, o, min(avail, o.remaining), price=px, liquidity="taker")
        return out

    def _cancel(self, ts: int, cid: str) -> list[Report]:
        o = self.orders.pop(cid, None)
        if o is not None:
            o.status = "canceled"
            self.closed[cid] = o
            return [Report(self._deliver(ts), self._event(ts, o, "canceled"))]
        done = self.closed.get(cid)
        if done is not None:
            # Already closed (filled, or canceled before): the venue says what it is.
            return [Report(self._deliver(ts), self._event(ts, done, done.status))]
        ev = OrderEvent(
            ts=ts,
            venue=self.venue,
            symbol=self.symbol,
            account=self.account,
            client_order_id=cid,
            status="rejected",
            side="buy",
            qty=0.0,
            reason="unknown_order: no such order at the venue",
        )
        return [Report(self._deliver(ts), ev)]

    def _fill(
        self,
        ts: int,
        o: SimOrder,
        qty: float,
        *,
        price: float | None = None,
        liquidity: Literal["maker", "taker"] = "maker",
    ) -> list[Report]:
        spec = self.spec
        qty = spec.qty_down(min(qty, o.remaining) + spec.lot_size * GRID_EPS)
        if qty <= 0:
            return []
        px = o.price if price is None else price
        rate = (self.config.maker_fee or 0.0) if liquidity == "maker" else self.config.taker_rate
        notional = px * qty
        fee = notional * rate
        o.filled = round(o.filled + qty, spec.qty_decimals + 2)
        signed = qty if o.side == "buy" else -qty
        self.base += signed
        self.quote -= signed * px + fee
        self.fees += fee
        self.fills += 1
        self._trade_ids += 1
        done = o.remaining <= spec.lot_size / 2
        if done:
            o.status = "filled"
            del self.orders[o.client_order_id]
            self.closed[o.client_order_id] = o
        else:
            o.status = "partial"
        deliver = self._deliver(ts)
        fill = Fill(
            ts=ts,
            venue=self.venue,
            symbol=self.symbol,
            account=self.account,
            trade_id=f"sim-{self._trade_ids}",
            client_order_id=o.client_order_id,
            exchange_order_id=o.exchange_order_id,
            side=o.side,
            price=px,
            qty=qty,
            fee=fee,
            fee_asset=self.quote_asset,
            liquidity=liquidity,
        )
        out = [Report(deliver, self._event(ts, o, o.status)), Report(deliver, fill)]
        return out + self._balances(ts, deliver)

    def _balances(self, ts: int, deliver: int) -> list[Report]:
        used_quote = sum(o.remaining * o.price for o in self.orders.values() if o.side == "buy")
        used_base = sum(o.remaining for o in self.orders.values() if o.side == "sell")
        out = []
        for asset, total, used in (
            (self.base_asset, self.base, used_base),
            (self.quote_asset, self.quote, used_quote),
        ):
            used = min(max(used, 0.0), max(total, 0.0))
            snap = BalanceSnapshot(
                ts=ts,
                venue=self.venue,
                account=self.account,
                asset=asset,
                free=max(total, 0.0) - used,
                used=used,
                total=max(total, 0.0),
            )
            out.append(Report(deliver, snap))
        return out
