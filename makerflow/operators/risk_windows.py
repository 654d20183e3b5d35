"""Risk measures in event-time windows: pure logic, no I/O, no clock.

One market's risk (:class:`MarketRisk`): its price and order windows
(:mod:`~makerflow.operators.risk_buckets`, aligned to the Unix epoch), its open orders in the
market's order state, and its PnL (:class:`PnlBook`).

What is measured, per market (:class:`MarketRisk`):
realized volatility and the largest move of the mid price in the window, order reject and
cancel rates in the window, notional resting in open orders, position, realized and unrealized
PnL (marked to the index when one is mapped, else to the mid) and drawdown from the PnL
high-water mark. Orders and fills go through the market's
:class:`~makerflow.operators.order_state.OrderState`: each fill counts once per (venue, trade
id), each order event once, and an order whose answer was lost (``unknown``) keeps its funds in
open notional until the venue says. Per account and asset
(:class:`~makerflow.operators.risk_exposure.ExposureBook`): exposure from the last balance
snapshot plus the fill legs since, each leg once.
Per account or globally (:class:`~makerflow.operators.risk_portfolio.Portfolio`): the sum of
the markets' PnL and open notional, and drawdown. Per index basket: the index-oracle deviation
(:func:`~makerflow.operators.risk_portfolio.oracle_deviation_bps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from makerflow.operators.order_records import Order, OrderStateSnapshot
from makerflow.operators.order_state import OrderState, account_order_state
from makerflow.operators.risk_buckets import BucketedWindow, OrderStats, PriceStats, WindowSpec
from makerflow.schemas.events import Fill, OrderEvent, Tick
from makerflow.schemas.scopes import symbol_assets

_MAX_TERMINAL = 256
_ID_MEMORY = 4096
"""Per market: closed orders kept whole, and ids of forgotten ones and of fills remembered
to drop repeats (the order state's bounds; a repeat further back than that counts again)."""

# --- PnL ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class PnlBook:
    """Position in the base asset at an average cost, and PnL in the quote asset.

    Fees paid in the quote reduce realized PnL; fees paid in the base reduce the position and
    are charged at the fill price; fees in another asset are not valued here (exposure still
    counts them)."""

    base: str
    quote: str
    position: float = 0.0
    avg_cost: float = 0.0
    realized: float = 0.0
    peak: float = 0.0

    def on_fill(self, side: str, price: float, qty: float, fee: float, fee_asset: str) -> None:
        signed = qty if side == "buy" else -qty
        pos = self.position
        if pos == 0 or (pos > 0) == (signed > 0):
            new = pos + signed
            self.avg_cost = (self.avg_cost * abs(pos) + price * qty) / abs(new) if new else 0.0
            self.position = new
        else:
            closed = min(abs(pos), qty)
            self.realized += closed * (price - self.avg_cost) * (1 if pos > 0 else -1)
            new = pos + signed
            if new == 0 or (new > 0) != (pos > 0):
                self.avg_cost = price if new else 0.0
            self.position = new
        if fee:
            if fee_asset == self.quote:
                self.realized -= fee
            elif fee_asset == self.base:
                self.position -= fee
                self.realized -= fee * price

    def unrealized(self, mark: float | None) -> float:
        if mark is None or not self.position:
            return 0.0
        return self.position * (mark - self.avg_cost)

    def total(self, mark: float | None) -> float:
        return self.realized + self.unrealized(mark)

    def drawdown(self, mark: float | None) -> float:
        """High-water mark of total PnL minus total PnL now (updates the mark)."""
        total = self.total(mark)
        self.peak = max(self.peak, total)
        return self.peak - total


# --- one market -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketMeasures:
    """Everything risk knows about one market at event time ``ts``."""

    market: str
    ts: int
    window_start: int
    window_end: int
    last_price: float | None
    realized_vol_bps: float
    largest_move_bps: float
    orders_submitted: int
    reject_rate: float
    cancel_rate: float
    open_orders: int
    open_notional: float
    position: float
    realized_pnl: float
    unrealized_pnl: float
    pnl: float
    drawdown: float

    def as_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {
            "realized_vol_bps": self.realized_vol_bps,
            "largest_move_bps": self.largest_move_bps,
            "orders_submitted": float(self.orders_submitted),
            "reject_rate": self.reject_rate,
            "cancel_rate": self.cancel_rate,
            "open_notional": self.open_notional,
            "position": self.position,
            "pnl": self.pnl,
            "drawdown": self.drawdown,
        }
        if self.last_price is not None:
            out["last_price"] = self.last_price
        return out


class MarketRisk:
    """Windows, open orders and PnL of one market (``venue:symbol``)."""

    def __init__(self, market: str, symbol: str, spec: WindowSpec) -> None:
        self.market = market
        self.spec = spec
        base, quote = symbol_assets(symbol)
        self.prices: BucketedWindow[PriceStats] = BucketedWindow(spec, PriceStats, PriceStats.merge)
        self.orders: BucketedWindow[OrderStats] = BucketedWindow(spec, OrderStats, OrderStats.merge)
        self.book = market_order_state()
        """Every order and fill of this market, each applied once (the one order truth)."""
        self.start_ts: int | None = None
        """The first tick's time: older fills (a start-up backfill) moved nothing of ours."""
        self._held: list[Fill] = []
        self.pnl = PnlBook(base, quote)
        self.last_mid: float | None = None
        self.index_mark: float | None = None
        self.last_ts = 0

    @property
    def mark(self) -> float | None:
        return self.index_mark if self.index_mark is not None else self.last_mid

    def on_tick(self, tick: Tick) -> bool:
        """Take a tick; False when it is too late for any open window (still marks PnL)."""
        mid = tick.mid
        if not (mid > 0 and math.isfinite(mid)):
            return True
        self.start(tick.ts)
        prev = self.last_mid
        ok = self.prices.update(tick.ts, lambda s: s.add(mid, prev))
        if ok:
            self.last_mid = mid
            self.last_ts = max(self.last_ts, tick.ts)
        return ok

    def on_index(self, price: float | None) -> None:
        self.index_mark = price if price is not None and price > 0 else None

    def on_order_event(self, ev: OrderEvent) -> bool:
        """Take an order event; False when it is too late for the rate windows."""
        t = self.book.on_order_event(ev)
        self.last_ts = max(self.last_ts, ev.ts)
        if t is None or not t.changed_state:
            return True  # a repeat (or no news): nothing to count
        first_seen = t.previous is None
        st = t.order.state

        def bump(s: OrderStats) -> OrderStats:
            return OrderStats(
                s.submitted + first_seen,
                s.rejected + (st == "rejected"),
                s.canceled + (st == "canceled"),
                s.filled + (st == "filled"),
            )

        return self.orders.update(ev.ts, bump)

    def on_fill(self, fill: Fill) -> bool:
        """Take a fill once per (venue, trade id); False for a repeat."""
        if self.book.on_fill(fill) is None:
            return False
        if self.start_ts is None:
            # Until the first tick (or heartbeat) says when the run started; bounded.
            if len(self._held) >= _ID_MEMORY:
                self._held.pop(0)
            self._held.append(fill)
        else:
            self._position(fill)
        self.last_ts = max(self.last_ts, fill.ts)
        return True

    def start(self, ts: int) -> None:
        """The run started at ``ts`` (the first tick, or the wall clock's first heartbeat):
        fills older than that were made before it and move no position."""
        if self.start_ts is not None:
            return
        self.start_ts = ts
        held, self._held = self._held, []
        for f in held:
            self._position(f)

    def _position(self, fill: Fill) -> None:
        if self.start_ts is not None and fill.ts >= self.start_ts:
            self.pnl.on_fill(fill.side, fill.price, fill.qty, fill.fee, fill.fee_asset)

    def open_notional(self, open_: tuple[Order, ...] | None = None) -> float:
        """What open orders (unknown and pending ones included) could still trade, valued
        at their price (at the mark when the venue did not say one). ``open_``: the book's
        open orders when the caller already has them."""
        if open_ is None:
            open_ = self.book.open_orders()
        mark = self.mark or 0.0
        return sum(o.remaining * (o.price if o.price is not None else mark) for o in open_)

    def measures(self, ts: int | None = None) -> MarketMeasures:
        at = self.last_ts if ts is None else ts
        # measured on every update: the newest of the three buckets without a generator
        bucket = self.spec.bucket_of(at)
        newest = self.prices.newest
        if newest is not None and newest > bucket:
            bucket = newest
        newest = self.orders.newest
        if newest is not None and newest > bucket:
            bucket = newest
        start, end = self.spec.window_of_bucket(bucket)
        px = self.prices.value(bucket)
        od = self.orders.value(bucket)
        mark = self.mark
        unreal = self.pnl.unrealized(mark)
        total = self.pnl.realized + unreal
        open_ = self.book.open_orders()
        return MarketMeasures(
            market=self.market,
            ts=at,
            window_start=start,
            window_end=end,
            last_price=self.last_mid,
            realized_vol_bps=px.realized_vol_bps,
            largest_move_bps=px.largest_move_bps,
            orders_submitted=od.submitted,
            reject_rate=od.reject_rate,
            cancel_rate=od.cancel_rate,
            open_orders=len(open_),
            open_notional=self.open_notional(open_),
            position=self.pnl.position,
            realized_pnl=self.pnl.realized,
            unrealized_pnl=unreal,
            pnl=total,
            drawdown=self.pnl.drawdown(mark),
        )

    def snapshot(self) -> tuple[object, ...]:
        p = self.pnl
        return (
            self.prices.snapshot(),
            self.orders.snapshot(),
            self.book.snapshot(),
            (p.position, p.avg_cost, p.realized, p.peak),
            self.last_mid,
            self.index_mark,
            self.last_ts,
            self.start_ts,
            tuple(self._held),
        )

    def restore(self, snap: tuple[object, ...]) -> None:
        prices, orders, open_, pnl, last_mid, index_mark, last_ts, start_ts, held = snap
        self.prices.restore(prices)  # type: ignore[arg-type]
        self.orders.restore(orders)  # type: ignore[arg-type]
        assert isinstance(open_, OrderStateSnapshot)
        self.book = market_order_state(open_)
        p = self.pnl
        p.position, p.avg_cost, p.realized, p.peak = pnl  # type: ignore[misc]
        self.last_mid = last_mid  # type: ignore[assignment]
        self.index_mark = index_mark  # type: ignore[assignment]
        self.last_ts = last_ts  # type: ignore[assignment]
        self.start_ts = start_ts  # type: ignore[assignment]
        self._held = list(held)  # type: ignore[call-overload]


def market_order_state(snapshot: OrderStateSnapshot | None = None) -> OrderState:
    # Risk hears order events, not intents: every order of the account is tracked (no prefix).
    return account_order_state(max_terminal=_MAX_TERMINAL, id_memory=_ID_MEMORY, snapshot=snapshot)
