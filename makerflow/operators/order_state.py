"""The one order state: every order of ours, fed by intents, order events and fills.

:class:`OrderState` is a pure order manager (no I/O, no clock, no globals). Quoting, risk,
execution and reconciliation read it; nobody keeps another copy of order truth.

API::

    s = OrderState(prefix="mf-", tolerance=1e-9)
    s.on_intent(intent)       -> tuple[Transition, ...]  place: pending_new; cancel, cancel_all:
                                                          pending_cancel
    s.on_order_event(ev)      -> Transition | None       None: ignored (not ours) or no change
    s.on_fill(fill)           -> FillEffect | None       None: a duplicate (venue, trade_id)
    s.adopt(cid)              -> Order | None            an orphan becomes ours to manage
    s.get(cid)                -> Order | None
    s.open_orders(market)     -> tuple[Order, ...]       non-terminal, incl. unknown and pending
    s.working_orders(market)  -> tuple[Order, ...]       open, and no cancel asked for
    s.counts()                -> dict[market, int]       open orders per ``venue:symbol``
    s.exposure(market)        -> Exposure                remaining qty and notional by side
    s.orphans(market)         -> tuple[Order, ...]       ours by prefix, never sent by us
    s.snapshot()              -> OrderStateSnapshot      small, immutable; OrderState(snapshot=)
    s.version, s.conflicts, s.ignored                    change counter; contradictions; not ours

States (:data:`OrderStateName`): ``pending_new`` (intent seen, no word from the venue),
``unknown`` (sent, the answer was lost: the wire status ``unknown``), ``open``,
``partially_filled``, ``pending_cancel`` (a cancel was asked and the venue has not closed the
order), and the terminal ``filled``, ``canceled``, ``rejected``, ``expired``.

How one order's facts merge, and why any order of arrival gives the same state, is
:mod:`makerflow.operators.order_merge`; this class keeps the orders, their indices and the
bounded memory. Contradictions in the input (two terminal words for one order, a canceled
order whose fills add up to its quantity) are counted in :attr:`OrderState.conflicts`.

Orphans: an order event for a client id with our ``prefix`` that no intent of ours placed gets a
record (``sent=False``), so the owner can cancel it or :meth:`adopt` it. Events for other client
ids are ignored (:attr:`ignored`); fills for them still return their effect, since they move our
balances all the same. A fill of an order the state does not hold yet is kept aside (by client
id) and joins the order when its intent or first event arrives; it makes no record of its own,
so a backfill of old trades does not fill the book with orders of unknown size.

Defaults for the bounds are for one long-lived owner; owners that snapshot often (each
Bytewax epoch) pass smaller ones. Memory is bounded: at most ``max_terminal`` terminal orders
are kept whole (oldest evicted first), the client ids of evicted orders are remembered up to
``max_tombstones`` (so a late duplicate event does not bring an order back as an orphan), up
to ``max_trade_ids`` trade ids are remembered to drop duplicate fills, and fills waiting for
their order are kept for up to ``max_tombstones`` client ids. Non-terminal orders are never
evicted: the venue must close them first. Within those bounds duplicates and reordering are
harmless; past them a very late duplicate (more than ``max_trade_ids`` fills later) could
count again.
"""

from __future__ import annotations

import math
from collections import deque

import msgspec

from makerflow.operators.bounded_set import BoundedSet
from makerflow.operators.order_merge import (
    claimed_order,
    derive,
    fills_sum,
    has_fill,
    merge_event,
    orphan_order,
    placed_order,
    with_fill,
)
from makerflow.operators.order_records import (
    TERMINAL,
    Exposure,
    FillEffect,
    Order,
    OrderStateName,
    OrderStateSnapshot,
    Transition,
)
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent

# The records are read through this module too (``from ...order_state import Order``).
__all__ = [
    "Exposure",
    "FillEffect",
    "Order",
    "OrderState",
    "OrderStateName",
    "OrderStateSnapshot",
    "Transition",
    "account_order_state",
]


class OrderState:
    """Every order of ours and every fill applied, in one place. See the module docstring."""

    def __init__(
        self,
        *,
        prefix: str = "mf-",
        tolerance: float = 1e-9,
        max_terminal: int = 10_000,
        max_tombstones: int = 100_000,
        max_trade_ids: int = 100_000,
        snapshot: OrderStateSnapshot | None = None,
    ) -> None:
        if tolerance < 0 or not math.isfinite(tolerance):
            raise ValueError(f"tolerance must be finite and >= 0, not {tolerance}")
        if min(max_terminal, max_tombstones, max_trade_ids) < 1:
            raise ValueError("max_terminal, max_tombstones and max_trade_ids must be >= 1")
        self.prefix = prefix
        self.tolerance = tolerance
        self.max_terminal = max_terminal
        self._orders: dict[str, Order] = {}
        self._open: dict[str, None] = {}
        """The client ids of non-terminal orders, oldest first (an ordered set)."""
        self._working: dict[str, None] = {}
        """The open ones no cancel was asked for: what still quotes."""
        self._terminal: deque[str] = deque()
        self._tombstones = BoundedSet(max_tombstones)
        self._trade_ids = BoundedSet(max_trade_ids)
        self._max_loose = max_tombstones
        self._loose: dict[str, tuple[Fill, ...]] = {}
        """Fills of orders not held yet, by client id (oldest first), waiting for the order."""
        self.conflicts = 0
        """Inputs that contradicted each other (two terminal words, canceled then filled)."""
        self.ignored = 0
        """Order events for client ids that are not ours (no prefix), or of evicted orders."""
        self.version = 0
        """Rises with every change of any order: a reader may cache what it derived."""
        self._unbooked: dict[str, dict[str, float]] = {}
        """Per market, per client id: what order events say traded beyond the fills applied
        (signed base quantity, + for a buy). The venue reports a trade twice, as an order
        update and as a fill, on two streams in either order; this is the part only the
        order update has told so far."""
        if snapshot is not None:
            self._orders = {o.client_order_id: o for o in snapshot.orders}
            self._open = {o.client_order_id: None for o in snapshot.orders if not o.terminal}
            self._working = {
                cid: None for cid in self._open if not self._orders[cid].cancel_requested
            }
            self._terminal = deque(snapshot.terminal_ids)
            self._tombstones = BoundedSet(max_tombstones, snapshot.tombstones)
            self._trade_ids = BoundedSet(max_trade_ids, snapshot.trade_ids)
            self._loose = dict(snapshot.loose)
            self.conflicts = snapshot.conflicts
            for o in snapshot.orders:
                self._track_unbooked(o)

    # --- inputs ---------------------------------------------------------------------------

    def on_intent(self, intent: OrderIntent) -> tuple[Transition, ...]:
        """A place makes a ``pending_new`` order (a repeated place changes nothing); a cancel
        marks its order ``pending_cancel``; a cancel_all marks every open order of its market
        and account. Cancels of orders the state does not hold do nothing."""
        if intent.action == "place":
            cid = intent.client_order_id
            if not cid or intent.side is None or cid in self._tombstones:
                return ()
            old = self._orders.get(cid)
            if old is None:
                new = self._with_loose(placed_order(intent))
            elif old.sent:
                return ()  # a replayed intent
            else:
                new = claimed_order(old, intent)
            return (self._store(old, new),)
        if intent.action == "cancel":
            old = self._orders.get(intent.client_order_id or "")
            if old is None or old.cancel_requested:
                return ()
            return (self._cancel_requested(old, intent.ts),)
        mkt = intent.key
        targets = [
            o
            for o in self._orders.values()
            if not o.terminal
            and not o.cancel_requested
            and o.market == mkt
            and o.account == intent.account
        ]
        return tuple(self._cancel_requested(o, intent.ts) for o in targets)

    def on_order_event(self, ev: OrderEvent) -> Transition | None:
        """The venue's (or the sink's) word on an order, by client id. ``None`` when it is
        not ours or changes nothing."""
        cid = ev.client_order_id
        if cid in self._tombstones:
            self.ignored += 1
            return None
        old = self._orders.get(cid)
        if old is None:
            if not cid or not cid.startswith(self.prefix):
                self.ignored += 1
                return None
            base = self._with_loose(orphan_order(ev))
        else:
            base = old
        merged = merge_event(base, ev, known=old is not None)
        if merged is None:
            return None  # a repeat, or older news: nothing to merge
        new = self._derive(merged)
        if old is not None and old == new:
            return None
        return self._store(old, new)

    def on_fill(self, fill: Fill) -> FillEffect | None:
        """Apply a fill once per (venue, trade id); ``None`` for a duplicate."""
        key = (fill.venue, fill.trade_id)
        if key in self._trade_ids:
            return None
        self._trade_ids.add(key)
        cid = fill.client_order_id or ""
        old = self._orders.get(cid) if cid else None
        if old is None:
            if cid and cid not in self._tombstones and cid.startswith(self.prefix):
                self._keep_loose(cid, fill)
            return FillEffect(fill=fill, order=None, previous=None, order_filled_delta=0.0)
        if has_fill(old, fill.trade_id):
            return None  # evicted from the global memory but still on the order
        new = self._derive(with_fill(old, fill))
        t = self._store(old, new)
        return FillEffect(
            fill=fill,
            order=t.order,
            previous=t.previous,
            order_filled_delta=max(new.filled - old.filled, 0.0),
        )

    def adopt(self, client_order_id: str) -> Order | None:
        """Take an orphan over: it stays tracked and is no longer listed by :meth:`orphans`."""
        old = self._orders.get(client_order_id)
        if old is None:
            return None
        if old.adopted:
            return old
        new = msgspec.structs.replace(old, adopted=True)
        self._orders[client_order_id] = new
        self.version += 1
        return new

    # --- queries --------------------------------------------------------------------------

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def __len__(self) -> int:
        return len(self._orders)

    def open_orders(self, market: str | None = None) -> tuple[Order, ...]:
        """Non-terminal orders (pending, unknown, open, partially filled), oldest first."""
        orders = self._orders
        if market is None:
            return tuple(orders[cid] for cid in self._open)
        return tuple(o for o in (orders[cid] for cid in self._open) if o.market == market)

    def working_orders(self, market: str | None = None) -> tuple[Order, ...]:
        """Open orders no cancel was asked for (what still quotes), oldest first."""
        orders = self._orders
        if market is None:
            return tuple(orders[cid] for cid in self._working)
        return tuple(o for o in (orders[cid] for cid in self._working) if o.market == market)

    def unbooked(self, market: str) -> float:
        """The signed base quantity (+ bought, - sold) that order updates report as traded
        on ``market`` and whose fills have not arrived yet. A position read from fills plus
        this is what the venue already holds, whichever of the two reports came first."""
        per = self._unbooked.get(market)
        if not per:
            return 0.0
        return math.fsum(per.values())

    def counts(self) -> dict[str, int]:
        """How many orders are open per market (``venue:symbol``)."""
        out: dict[str, int] = {}
        for cid in self._open:
            m = self._orders[cid].market
            out[m] = out.get(m, 0) + 1
        return out

    def exposure(self, market: str | None = None) -> Exposure:
        """What open orders could still trade, by side. Unknown and pending orders count:
        their funds stay taken until the venue says what happened."""
        bq = sq = bn = sn = 0.0
        n = 0
        for o in self.open_orders(market):
            n += 1
            rem = o.remaining
            notional = rem * o.price if o.price is not None else 0.0
            if o.side == "buy":
                bq += rem
                bn += notional
            else:
                sq += rem
                sn += notional
        return Exposure(buy_qty=bq, sell_qty=sq, buy_notional=bn, sell_notional=sn, orders=n)

    def orphans(self, market: str | None = None) -> tuple[Order, ...]:
        """Open orders with our prefix that no intent of ours placed, not adopted and not
        being canceled: the owner cancels or adopts each."""
        return tuple(
            o
            for o in self.open_orders(market)
            if not o.sent and not o.adopted and not o.cancel_requested
        )

    def snapshot(self) -> OrderStateSnapshot:
        return OrderStateSnapshot(
            orders=tuple(self._orders.values()),
            terminal_ids=tuple(self._terminal),
            tombstones=tuple(str(x) for x in self._tombstones.items()),
            trade_ids=tuple(_pair(x) for x in self._trade_ids.items()),
            loose=tuple(self._loose.items()),
            conflicts=self.conflicts,
        )

    # --- internals ------------------------------------------------------------------------

    def _keep_loose(self, cid: str, fill: Fill) -> None:
        kept = self._loose.pop(cid, ())
        self._loose[cid] = (*kept, fill)
        while len(self._loose) > self._max_loose:
            del self._loose[next(iter(self._loose))]

    def _with_loose(self, o: Order) -> Order:
        """``o`` with the fills that arrived before it; derived again."""
        for f in self._loose.pop(o.client_order_id, ()):
            if not has_fill(o, f.trade_id):
                o = with_fill(o, f)
        return self._derive(o)

    def _cancel_requested(self, old: Order, ts: int) -> Transition:
        new = self._derive(
            msgspec.structs.replace(old, cancel_requested=True, last_ts=max(old.last_ts, ts))
        )
        return self._store(old, new)

    def _derive(self, o: Order) -> Order:
        return derive(o, self.tolerance)

    def _store(self, old: Order | None, new: Order) -> Transition:
        previous = old.state if old is not None else None
        is_terminal = new.state in TERMINAL
        if old is not None and (old.terminals is not new.terminals or previous != new.state):
            more_words = len(new.terminals) > max(len(old.terminals), 1)
            if more_words or (previous in TERMINAL and previous != new.state):
                self.conflicts += 1
        cid = new.client_order_id
        self._orders[cid] = new
        self.version += 1
        self._track_unbooked(new)
        if not is_terminal:
            self._open[cid] = None
            if new.cancel_requested:
                self._working.pop(cid, None)
            else:
                self._working[cid] = None
        elif previous is None or previous not in TERMINAL:
            self._open.pop(cid, None)
            self._working.pop(cid, None)
            self._terminal.append(cid)
            while len(self._terminal) > self.max_terminal:
                gone = self._terminal.popleft()
                evicted = self._orders.pop(gone, None)
                if evicted is not None:
                    # Its missing fill, if any, is now the balance re-anchoring's to find.
                    self._unbooked.get(evicted.market, {}).pop(gone, None)
                self._tombstones.add(gone)
        return Transition(previous=previous, order=new)

    def _track_unbooked(self, o: Order) -> None:
        missing = o.filled - fills_sum(o)
        per = self._unbooked.get(o.market)
        if missing > self.tolerance:
            if per is None:
                per = self._unbooked[o.market] = {}
            per[o.client_order_id] = missing if o.side == "buy" else -missing
        elif per:
            per.pop(o.client_order_id, None)


def account_order_state(
    *, max_terminal: int, id_memory: int, snapshot: OrderStateSnapshot | None = None
) -> OrderState:
    """An order state of every order of an account, whoever placed it (no prefix filter), for
    the readers that hear order events but not intents (risk, reconciliation). ``id_memory``
    bounds both the evicted orders' ids and the fills' trade ids it remembers."""
    return OrderState(
        prefix="",
        max_terminal=max_terminal,
        max_tombstones=id_memory,
        max_trade_ids=id_memory,
        snapshot=snapshot,
    )


def _pair(x: object) -> tuple[str, str]:
    assert isinstance(x, tuple) and len(x) == 2
    return (str(x[0]), str(x[1]))
