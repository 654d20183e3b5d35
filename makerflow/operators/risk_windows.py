"""Risk measures in event-time windows: pure logic, no I/O, no clock.

Windows are aligned to the Unix epoch. A :class:`WindowSpec` of length ``L`` and slide ``S``
(``L`` a multiple of ``S``; tumbling when ``L == S``) keeps ``L / S`` buckets of ``S``
nanoseconds, bucket ``b`` covering ``[b*S, (b+1)*S)``. The window an event at ``ts`` is judged
in is the one that ends with the bucket holding ``ts``: ``[(b+1)*S - L, (b+1)*S)``. Measures are
updated on every event, so a breach is seen on the event that causes it, not when the window
closes; the same input gives the same measures whatever the wall clock says.

What is measured, per market (:class:`MarketRisk`): realized volatility and the largest move of
the mid price in the window, order reject and cancel rates in the window, notional resting in
open orders, position, realized and unrealized PnL (marked to the index when one is mapped,
else to the mid) and drawdown from the PnL high-water mark. Orders and fills go through the
market's :class:`~makerflow.operators.order_state.OrderState`: each fill counts once per
(venue, trade id), each order event once, and an order whose answer was lost (``unknown``)
keeps its funds in open notional until the venue says. Per account and asset
(:class:`ExposureBook`): exposure from the last balance snapshot plus the fill legs since,
each leg once.
Per account or globally (:class:`Portfolio`): the sum of the markets' PnL and open notional,
and drawdown. Per index basket: the index-oracle deviation (:func:`oracle_deviation_bps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from makerflow.operators.order_state import BoundedSet, OrderState, OrderStateSnapshot
from makerflow.schemas.events import Fill, IndexPrice, OrderEvent, Tick
from makerflow.schemas.scopes import symbol_assets

NS_PER_S = 1_000_000_000
BPS = 10_000.0


@dataclass(frozen=True)
class WindowSpec:
    """An epoch-aligned window: ``length_ns`` long, sliding by ``slide_ns``."""

    length_ns: int
    slide_ns: int

    def __post_init__(self) -> None:
        if self.slide_ns <= 0 or self.length_ns <= 0:
            raise ValueError(f"window length and slide must be positive, got {self}")
        if self.length_ns % self.slide_ns:
            raise ValueError(
                f"window length {self.length_ns} ns is not a multiple of the slide"
                f" {self.slide_ns} ns: pick a slide that divides the length"
            )

    @classmethod
    def tumbling(cls, length_ns: int) -> WindowSpec:
        return cls(length_ns, length_ns)

    @property
    def buckets(self) -> int:
        return self.length_ns // self.slide_ns

    def bucket_of(self, ts: int) -> int:
        return ts // self.slide_ns

    def window_of_bucket(self, bucket: int) -> tuple[int, int]:
        """``[start, end)`` of the window that ends with ``bucket``."""
        end = (bucket + 1) * self.slide_ns
        return end - self.length_ns, end

    def window_of(self, ts: int) -> tuple[int, int]:
        return self.window_of_bucket(self.bucket_of(ts))


A = TypeVar("A")


class BucketedWindow(Generic[A]):
    """The buckets of one sliding window, each an aggregate that merges in time order.

    ``merge(earlier, later)`` must be associative. The merge of all closed buckets is cached,
    so reading the window costs one merge however many buckets it spans.
    """

    __slots__ = ("_buckets", "_empty", "_merge", "_newest", "_prefix", "spec")

    def __init__(
        self, spec: WindowSpec, empty: Callable[[], A], merge: Callable[[A, A], A]
    ) -> None:
        self.spec = spec
        self._empty = empty
        self._merge = merge
        self._buckets: dict[int, A] = {}
        self._newest: int | None = None
        self._prefix: A | None = None

    @property
    def newest(self) -> int | None:
        return self._newest

    def update(self, ts: int, fn: Callable[[A], A]) -> bool:
        """Apply ``fn`` to the bucket of ``ts``. False when ``ts`` is older than the window
        (a late event that no open window can take)."""
        b = self.spec.bucket_of(ts)
        newest = self._newest
        if newest is not None and b <= newest - self.spec.buckets:
            return False
        if newest is None or b > newest:
            self._newest = newest = b
            oldest = b - self.spec.buckets + 1
            for k in [k for k in self._buckets if k < oldest]:
                del self._buckets[k]
            self._prefix = None
        elif b < newest:
            self._prefix = None
        self._buckets[b] = fn(self._buckets.get(b, self._empty()))
        return True

    def value(self, upto: int | None = None) -> A:
        """The merge of every bucket in the window that ends with bucket ``upto`` (default:
        the newest bucket seen)."""
        newest = self._newest
        if newest is None:
            return self._empty()
        if upto is not None and upto != newest:
            acc = self._empty()
            for k in sorted(self._buckets):
                if upto - self.spec.buckets < k <= upto:
                    acc = self._merge(acc, self._buckets[k])
            return acc
        if self._prefix is None:
            acc = self._empty()
            for k in sorted(self._buckets):
                if k < newest:
                    acc = self._merge(acc, self._buckets[k])
            self._prefix = acc
        return self._merge(self._prefix, self._buckets.get(newest, self._empty()))

    def snapshot(self) -> tuple[int | None, tuple[tuple[int, A], ...]]:
        return self._newest, tuple(sorted(self._buckets.items()))

    def restore(self, snap: tuple[int | None, tuple[tuple[int, A], ...]]) -> None:
        self._newest, items = snap
        self._buckets = dict(items)
        self._prefix = None


# --- price statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceStats:
    """Mid prices of a span of time: range, largest up and down move, sum of squared log
    returns. ``up`` is the largest rise ``p_j / p_i - 1`` with ``i`` before ``j``; ``down`` the
    largest fall ``1 - p_j / p_i``."""

    first: float = math.nan
    last: float = math.nan
    low: float = math.inf
    high: float = -math.inf
    up: float = 0.0
    down: float = 0.0
    sumsq: float = 0.0
    returns: int = 0

    def add(self, price: float, prev: float | None) -> PriceStats:
        sumsq, n = self.sumsq, self.returns
        if prev is not None and prev > 0:
            r = math.log(price / prev)
            sumsq += r * r
            n += 1
        if math.isnan(self.first):
            return PriceStats(price, price, price, price, 0.0, 0.0, sumsq, n)
        return PriceStats(
            self.first,
            price,
            min(self.low, price),
            max(self.high, price),
            max(self.up, price / self.low - 1.0),
            max(self.down, 1.0 - price / self.high),
            sumsq,
            n,
        )

    @staticmethod
    def merge(a: PriceStats, b: PriceStats) -> PriceStats:
        if math.isnan(a.first):
            return PriceStats(
                b.first,
                b.last,
                b.low,
                b.high,
                b.up,
                b.down,
                a.sumsq + b.sumsq,
                a.returns + b.returns,
            )
        if math.isnan(b.first):
            return PriceStats(
                a.first,
                a.last,
                a.low,
                a.high,
                a.up,
                a.down,
                a.sumsq + b.sumsq,
                a.returns + b.returns,
            )
        return PriceStats(
            a.first,
            b.last,
            min(a.low, b.low),
            max(a.high, b.high),
            max(a.up, b.up, b.high / a.low - 1.0),
            max(a.down, b.down, 1.0 - b.low / a.high),
            a.sumsq + b.sumsq,
            a.returns + b.returns,
        )

    @property
    def realized_vol_bps(self) -> float:
        """Realized volatility over the window (not annualized), in basis points."""
        return math.sqrt(self.sumsq) * BPS

    @property
    def largest_move_bps(self) -> float:
        return max(self.up, self.down) * BPS


# --- order statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderStats:
    """Counts of order lifecycle events in a span of time."""

    submitted: int = 0
    rejected: int = 0
    canceled: int = 0
    filled: int = 0

    @staticmethod
    def merge(a: OrderStats, b: OrderStats) -> OrderStats:
        return OrderStats(
            a.submitted + b.submitted,
            a.rejected + b.rejected,
            a.canceled + b.canceled,
            a.filled + b.filled,
        )

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.submitted if self.submitted else 0.0

    @property
    def cancel_rate(self) -> float:
        return self.canceled / self.submitted if self.submitted else 0.0


_MAX_TERMINAL = 256
_ID_MEMORY = 4096
"""Per market: closed orders kept whole, and ids of forgotten ones and of fills remembered
to drop repeats (the order state's bounds; a repeat further back than that counts again)."""
_LEG_MEMORY = 8192
"""Per account and asset: leg ids remembered to drop a fill delivered again."""


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
        self.book = _order_state()
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

    def open_notional(self) -> float:
        """What open orders (unknown and pending ones included) could still trade, valued
        at their price (at the mark when the venue did not say one)."""
        mark = self.mark or 0.0
        return sum(
            o.remaining * (o.price if o.price is not None else mark)
            for o in self.book.open_orders()
        )

    def measures(self, ts: int | None = None) -> MarketMeasures:
        at = self.last_ts if ts is None else ts
        bucket = max(
            b
            for b in (self.prices.newest, self.orders.newest, self.spec.bucket_of(at))
            if b is not None
        )
        start, end = self.spec.window_of_bucket(bucket)
        px = self.prices.value(bucket)
        od = self.orders.value(bucket)
        mark = self.mark
        unreal = self.pnl.unrealized(mark)
        total = self.pnl.realized + unreal
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
            open_orders=len(self.book.open_orders()),
            open_notional=self.open_notional(),
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
        self.book = _order_state(open_)
        p = self.pnl
        p.position, p.avg_cost, p.realized, p.peak = pnl  # type: ignore[misc]
        self.last_mid = last_mid  # type: ignore[assignment]
        self.index_mark = index_mark  # type: ignore[assignment]
        self.last_ts = last_ts  # type: ignore[assignment]
        self.start_ts = start_ts  # type: ignore[assignment]
        self._held = list(held)  # type: ignore[call-overload]


# --- exposure ---------------------------------------------------------------------------------


def _order_state(snapshot: OrderStateSnapshot | None = None) -> OrderState:
    # Risk hears order events, not intents: every order of the account is tracked (no prefix).
    return OrderState(
        prefix="",
        max_terminal=_MAX_TERMINAL,
        max_tombstones=_ID_MEMORY,
        max_trade_ids=_ID_MEMORY,
        snapshot=snapshot,
    )


@dataclass(frozen=True, slots=True)
class Leg:
    """One asset movement of one account caused by a fill (a base leg, a quote leg or a fee)."""

    account: str
    asset: str
    ts: int
    amount: float
    fill_id: str
    kind: str = "base"
    """``base``, ``quote`` or ``fee``: a fee in the base asset is a second leg of that asset."""

    @property
    def key(self) -> str:
        """Unique per leg of a fill: a fill delivered again has the same keys."""
        return f"{self.fill_id}:{self.kind}"


def fill_legs(fill: Fill) -> tuple[Leg, ...]:
    """The base leg, the quote leg and the fee of ``fill``."""
    base, quote = symbol_assets(fill.symbol)
    sign = 1.0 if fill.side == "buy" else -1.0
    fid = f"{fill.venue}:{fill.symbol}:{fill.trade_id}"
    legs = [
        Leg(fill.account, base, fill.ts, sign * fill.qty, fid, "base"),
        Leg(fill.account, quote, fill.ts, -sign * fill.qty * fill.price, fid, "quote"),
    ]
    if fill.fee and fill.fee_asset:
        legs.append(Leg(fill.account, fill.fee_asset, fill.ts, -fill.fee, fid, "fee"))
    return tuple(legs)


@dataclass(slots=True)
class ExposureBook:
    """Exposure of one account in one asset: the last balance snapshot's total plus every fill
    leg after it. Legs at or before the snapshot are already in it, whatever order the two
    streams arrive in, so the result does not depend on arrival order; a leg seen again (a fill
    delivered twice) is dropped by its key."""

    balance: float = 0.0
    balance_ts: int | None = None
    legs: list[tuple[int, float]] = field(default_factory=list)
    seen: BoundedSet = field(default_factory=lambda: BoundedSet(_LEG_MEMORY))

    def on_leg(self, ts: int, amount: float, key: str | None = None) -> float:
        """Add a leg (once per ``key``, when given) and return the exposure."""
        if key is not None:
            if key in self.seen:
                return self.exposure
            self.seen.add(key)
        if self.balance_ts is None or ts > self.balance_ts:
            self.legs.append((ts, amount))
        return self.exposure

    def on_balance(self, ts: int, total: float) -> float:
        if self.balance_ts is None or ts >= self.balance_ts:
            self.balance, self.balance_ts = total, ts
            self.legs = [(t, a) for t, a in self.legs if t > ts]
        return self.exposure

    @property
    def exposure(self) -> float:
        return self.balance + sum(a for _, a in self.legs)

    def snapshot(
        self,
    ) -> tuple[float, int | None, tuple[tuple[int, float], ...], tuple[object, ...]]:
        return self.balance, self.balance_ts, tuple(self.legs), self.seen.items()

    @classmethod
    def restore(cls, snap: tuple[Any, ...]) -> ExposureBook:
        """From :meth:`snapshot` (or the three-element snapshot of before leg keys)."""
        balance, balance_ts, legs, *rest = snap
        seen = BoundedSet(_LEG_MEMORY, rest[0] if rest else ())
        return cls(float(balance), balance_ts, list(legs), seen)


# --- portfolio (account or global) ------------------------------------------------------------


@dataclass(frozen=True)
class MarketSummary:
    """A market's contribution to its account's and the global totals."""

    market: str
    account: str
    ts: int
    pnl: float
    open_notional: float


@dataclass(frozen=True)
class PortfolioMeasures:
    ts: int
    pnl: float
    drawdown: float
    open_notional: float

    def as_metrics(self) -> dict[str, float]:
        return {"pnl": self.pnl, "drawdown": self.drawdown, "open_notional": self.open_notional}


@dataclass(slots=True)
class Portfolio:
    """Sum of the latest summary of each market; drawdown from the total's high-water mark."""

    latest: dict[str, tuple[float, float]] = field(default_factory=dict)
    peak: float = 0.0

    def on_summary(self, s: MarketSummary) -> PortfolioMeasures:
        self.latest[s.market] = (s.pnl, s.open_notional)
        pnl = sum(p for p, _ in self.latest.values())
        self.peak = max(self.peak, pnl)
        return PortfolioMeasures(
            ts=s.ts,
            pnl=pnl,
            drawdown=self.peak - pnl,
            open_notional=sum(n for _, n in self.latest.values()),
        )

    def snapshot(self) -> tuple[tuple[tuple[str, tuple[float, float]], ...], float]:
        return tuple(self.latest.items()), self.peak


# --- index ------------------------------------------------------------------------------------


def oracle_deviation_bps(ip: IndexPrice) -> float | None:
    """Absolute deviation of the index from the oracle in bps, or None without both prices.
    Uses the index service's figure when it sent one."""
    if ip.oracle_deviation_bps is not None:
        return abs(ip.oracle_deviation_bps)
    if ip.price is None or ip.oracle_price is None or ip.oracle_price <= 0:
        return None
    return abs(ip.price / ip.oracle_price - 1.0) * BPS
