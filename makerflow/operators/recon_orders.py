"""Open-order reconciliation: our view of open orders against the exchange's own list
(``fetch_open_orders``). Pure: no I/O, no clock.

Our view is the one order state (:class:`~makerflow.operators.order_state.OrderState`) fed with
our order events (and fills, where the caller has them): :class:`OpenOrderView` only reads it
and remembers how far in event time it has read. An order whose answer was lost (``unknown``)
is open in this view until the venue says otherwise.

Three findings, each something a person must act on:

- *orphans*: orders resting on the exchange that we do not think are open (a lost ack, a
  restart that forgot them, someone trading by hand): they trade without our risk limits;
- *missing*: orders we think are open that the exchange does not have (a lost cancel or fill
  event): our inventory and quotes are built on orders that are not there;
- *mismatched*: both sides have the order but disagree on side, price, size or fills.

Nothing is judged that our view cannot know yet, so a view still reading its backlog (a
restart) or events still in flight raise no false alarm:

- an exchange order is an orphan if its client order id lacks our prefix (``own_prefix``: this
  system did not place it, whatever our view adopted), or if our view has seen events at least
  ``grace`` past the order's creation (event time), so its ack would have arrived were it ours;
- an order of ours is missing only if its last word is ``grace`` older than the listing and our
  view is no more than ``max_view_lag`` behind the listing (otherwise its fill or cancel may be
  further down the backlog).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from makerflow.operators.order_records import Order, OrderStateSnapshot
from makerflow.operators.order_state import OrderState, account_order_state
from makerflow.schemas.events import Alert, Fill, OrderEvent, Side
from makerflow.schemas.scopes import account_scope

ORPHAN_ALERT = "OpenOrderOrphan"
MISSING_ALERT = "OpenOrderMissing"
MISMATCH_ALERT = "OpenOrderMismatch"
MS = 1_000_000


@dataclass(frozen=True)
class ExchangeOrder:
    """One open order as the exchange lists it (translated from ccxt's order dict by the
    venue layer, :func:`makerflow.venue.exchange_order_from_ccxt`)."""

    symbol: str
    side: Side
    exchange_order_id: str
    client_order_id: str | None
    price: float | None
    qty: float
    filled: float
    ts: int
    """When the exchange created the order, ns UTC (0 if it did not say)."""


@dataclass(frozen=True)
class ExchangeOpenOrders:
    """The exchange's list of open orders of one account at ``ts``, optionally only for
    ``symbols`` (``fetch_open_orders(symbol)`` lists one market)."""

    venue: str
    account: str
    ts: int
    orders: tuple[ExchangeOrder, ...]
    symbols: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.account}"


def order_view_key(ev: OrderEvent) -> str:
    """Open orders are reconciled per ``venue:account``: the scope of one open-orders list."""
    return f"{ev.venue}:{ev.account}"


@dataclass(frozen=True)
class Mismatch:
    ours: Order
    theirs: ExchangeOrder
    what: str


@dataclass(frozen=True)
class OpenOrderDiff:
    venue: str
    account: str
    ts: int
    matched: int
    orphans: tuple[ExchangeOrder, ...] = ()
    missing: tuple[Order, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    unjudged: str = ""
    """Why part of the listing was not judged (our view behind it), empty when all was."""

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.missing or self.mismatched)


_MAX_TERMINAL = 1024
_ID_MEMORY = 16_384


class OpenOrderView:
    """What we believe is open: a reader of an :class:`OrderState` fed with our orders'
    events, in any order and however often (a stale ``ack`` cannot reopen a closed order),
    plus the event time it has read up to."""

    def __init__(self, state: OrderState | None = None, newest: int = 0) -> None:
        self.orders = state if state is not None else _order_state()
        self._newest = newest

    def apply(self, ev: OrderEvent) -> None:
        self._newest = max(self._newest, ev.ts)
        self.orders.on_order_event(ev)

    def apply_fill(self, fill: Fill) -> None:
        """A fill moves its order's filled quantity (once per trade id)."""
        self._newest = max(self._newest, fill.ts)
        self.orders.on_fill(fill)

    @property
    def watermark(self) -> int | None:
        """Event time of the newest order event seen."""
        return self._newest or None

    def open_orders(self) -> list[Order]:
        return sorted(self.orders.open_orders(), key=lambda o: (o.last_ts, o.client_order_id))

    def state(self) -> tuple[OrderStateSnapshot, int]:
        return self.orders.snapshot(), self._newest

    @classmethod
    def from_state(cls, state: tuple[OrderStateSnapshot, int]) -> OpenOrderView:
        snap, newest = state
        return cls(_order_state(snap), newest)


def _order_state(snapshot: OrderStateSnapshot | None = None) -> OrderState:
    # Reconciliation hears order events for every order of the account: no prefix filter.
    return account_order_state(max_terminal=_MAX_TERMINAL, id_memory=_ID_MEMORY, snapshot=snapshot)


def _differs(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    return not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def reconcile_open_orders(
    view: OpenOrderView,
    theirs: ExchangeOpenOrders,
    *,
    grace_ns: int,
    max_view_lag_ns: int,
    own_prefix: str | None = None,
) -> OpenOrderDiff:
    """Compare our open orders with the exchange's list taken at ``theirs.ts``."""
    settled = theirs.ts - grace_ns
    seen_until = view.watermark
    judge_missing = False
    unjudged = ""
    if seen_until is None:
        unjudged = "no order events seen yet"
    elif theirs.ts - seen_until > max_view_lag_ns:
        unjudged = f"our order events are {(theirs.ts - seen_until) / 1e9:.0f}s behind the listing"
    else:
        judge_missing = True
    mine = [
        o
        for o in view.open_orders()
        if o.venue == theirs.venue
        and o.account == theirs.account
        and (theirs.symbols is None or o.symbol in theirs.symbols)
    ]
    by_cid = {o.client_order_id: o for o in mine}
    by_xid = {o.exchange_order_id: o for o in mine if o.exchange_order_id}
    seen: set[str] = set()
    orphans: list[ExchangeOrder] = []
    mismatched: list[Mismatch] = []
    matched = 0
    for x in sorted(theirs.orders, key=lambda x: (x.ts, x.exchange_order_id)):
        o = by_cid.get(x.client_order_id or "") or by_xid.get(x.exchange_order_id)
        if own_prefix is not None and not (x.client_order_id or "").startswith(own_prefix):
            orphans.append(x)
            if o is not None:
                seen.add(o.client_order_id)
            continue
        if o is None:
            if seen_until is not None and x.ts <= seen_until - grace_ns:
                orphans.append(x)
            continue
        seen.add(o.client_order_id)
        matched += 1
        what = []
        if o.side != x.side or o.symbol != x.symbol:
            what.append(f"{o.symbol} {o.side} vs exchange {x.symbol} {x.side}")
        if _differs(o.price, x.price):
            what.append(f"price {o.price} vs exchange {x.price}")
        if _differs(o.qty, x.qty):
            what.append(f"qty {o.qty} vs exchange {x.qty}")
        # Our fill count lags the exchange's while a fill is in flight: judge it once settled.
        if o.last_ts <= settled and _differs(o.filled, x.filled):
            what.append(f"filled {o.filled} vs exchange {x.filled}")
        if what:
            mismatched.append(Mismatch(o, x, "; ".join(what)))
    missing = [
        o for o in mine if judge_missing and o.client_order_id not in seen and o.last_ts <= settled
    ]
    return OpenOrderDiff(
        venue=theirs.venue,
        account=theirs.account,
        ts=theirs.ts,
        matched=matched,
        orphans=tuple(orphans),
        missing=tuple(sorted(missing, key=lambda o: (o.last_ts, o.client_order_id))),
        mismatched=tuple(mismatched),
        unjudged=unjudged,
    )


def diff_alerts(diff: OpenOrderDiff) -> list[Alert]:
    """One alert per kind of finding, naming every order involved."""
    labels = {"venue": diff.venue, "account": diff.account}
    scope = account_scope(diff.account)
    out: list[Alert] = []
    if diff.orphans:
        ids = ", ".join(
            f"{x.symbol} {x.side} {x.qty}@{x.price} id={x.exchange_order_id}"
            f" cid={x.client_order_id}"
            for x in diff.orphans
        )
        out.append(
            Alert(
                ts=diff.ts,
                name=ORPHAN_ALERT,
                severity="critical",
                scope=scope,
                message=f"{len(diff.orphans)} order(s) open on {diff.venue} that we do not"
                f" track: {ids}",
                labels={**labels, "count": str(len(diff.orphans))},
            )
        )
    if diff.missing:
        ids = ", ".join(
            f"{o.symbol} {o.side} {o.qty}@{o.price} cid={o.client_order_id}" for o in diff.missing
        )
        out.append(
            Alert(
                ts=diff.ts,
                name=MISSING_ALERT,
                severity="warning",
                scope=scope,
                message=f"{len(diff.missing)} order(s) we think open are not open on"
                f" {diff.venue}: {ids}",
                labels={**labels, "count": str(len(diff.missing))},
            )
        )
    if diff.mismatched:
        ids = ", ".join(f"cid={m.ours.client_order_id}: {m.what}" for m in diff.mismatched)
        out.append(
            Alert(
                ts=diff.ts,
                name=MISMATCH_ALERT,
                severity="warning",
                scope=scope,
                message=f"{len(diff.mismatched)} order(s) differ from {diff.venue}: {ids}",
                labels={**labels, "count": str(len(diff.mismatched))},
            )
        )
    return out
