"""How one order's facts merge, and the state that follows from them.

Why any order of arrival gives the same state: an order's record
(:class:`~makerflow.operators.order_records.Order`) keeps only facts that merge the same way
in any order (a join): the highest venue status seen (pending < unknown < open), the set of
terminal statuses seen, whether a cancel was asked, the highest cumulative filled quantity any
order event reported, the set of fills applied (by trade id), and whether we rejected it
ourselves. Its state is a function of those facts (:func:`derive`), so duplicates change
nothing and reordering ends in the same record. The order's filled quantity is
``max(cumulative from order events, sum of fills)``: a fill and the order update that covers
it count once, whichever comes first.

Transitions (:data:`~makerflow.operators.order_records.TRANSITIONS`) are only the ones a venue
allows: pending and unknown states resolve to whatever the venue says, a terminal state stays
terminal. One exception, kept because quantity is the harder fact: a canceled, expired or
rejected order whose fills add up to its full quantity becomes ``filled`` (the venue's terminal
word was older than its fills). Two different terminal words for one order are a contradiction
in the input; the state keeps the stronger one (filled > canceled > expired > rejected).

Every function here is pure and works on one record; the bookkeeping across orders (indices,
bounded memory, fills waiting for their order) is :class:`~makerflow.operators.order_state.
OrderState`'s.
"""

from __future__ import annotations

import math

import msgspec

from makerflow.operators.order_records import (
    OPEN_RANK,
    PENDING_RANK,
    TERMINAL_STRENGTH,
    UNKNOWN_RANK,
    VENUE_RANK,
    WIRE_TERMINAL,
    Order,
    OrderStateName,
)
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent


def placed_order(intent: OrderIntent) -> Order:
    """The record a place intent makes for an order the state has never seen."""
    assert intent.client_order_id and intent.side is not None
    return Order(
        client_order_id=intent.client_order_id,
        venue=intent.venue,
        symbol=intent.symbol,
        account=intent.account,
        side=intent.side,
        price=intent.price,
        qty=intent.qty,
        state="pending_new",
        sent=True,
        placed_ts=intent.ts,
        last_ts=intent.ts,
    )


def claimed_order(old: Order, intent: OrderIntent) -> Order:
    """An orphan whose place intent arrived after the venue's word: it was ours after all."""
    return msgspec.structs.replace(
        old,
        sent=True,
        placed_ts=intent.ts,
        price=intent.price if intent.price is not None else old.price,
        qty=intent.qty if intent.qty is not None else old.qty,
        last_ts=max(old.last_ts, intent.ts),
    )


def orphan_order(ev: OrderEvent) -> Order:
    """The record the first order event of an order no intent of ours placed makes."""
    return Order(
        client_order_id=ev.client_order_id,
        venue=ev.venue,
        symbol=ev.symbol,
        account=ev.account,
        side=ev.side,
        price=ev.price,
        qty=ev.qty if ev.qty > 0 else None,
        state="unknown",
        last_ts=ev.ts,
    )


def merge_event(base: Order, ev: OrderEvent, *, known: bool) -> Order | None:
    """``base`` with the facts of ``ev`` joined in, not derived yet. ``None`` when ``base`` is
    a ``known`` record and ``ev`` is a repeat or older news, with nothing to merge."""
    rank, terminals = base.rank, base.terminals
    terminal = WIRE_TERMINAL.get(ev.status)
    if terminal is not None:
        if terminal not in terminals:
            terminals = tuple(sorted((*terminals, terminal)))
    else:
        rank = max(rank, VENUE_RANK.get(ev.status, PENDING_RANK))
    qty = base.qty
    if qty is None and ev.qty > 0:
        qty = ev.qty
    xid = first_id(base.exchange_order_id, ev.exchange_order_id)
    if (
        known
        and rank == base.rank
        and terminals is base.terminals
        and qty == base.qty
        and ev.filled_qty <= base.event_filled
        and ev.ts <= base.last_ts
        and xid == base.exchange_order_id
        and (not ev.reason or ev.reason == base.reason)
        and (base.price is not None or ev.price is None)
    ):
        return None
    # The reason kept is the one of the strongest word, ties broken by the text, so that
    # it does not depend on the order events arrive in.
    word = (
        10 + TERMINAL_STRENGTH[terminal] if terminal is not None else VENUE_RANK.get(ev.status, 0)
    )
    reason, reason_rank = base.reason, base.reason_rank
    if ev.reason and (word, ev.reason) > (reason_rank, reason):
        reason, reason_rank = ev.reason, word
    return msgspec.structs.replace(
        base,
        rank=rank,
        terminals=terminals,
        qty=qty,
        price=base.price if base.price is not None else ev.price,
        event_filled=max(base.event_filled, ev.filled_qty),
        exchange_order_id=xid,
        last_ts=max(base.last_ts, ev.ts),
        reason=reason,
        reason_rank=reason_rank,
    )


def has_fill(o: Order, trade_id: str) -> bool:
    return any(tid == trade_id for tid, _ in o.fills)


def with_fill(o: Order, fill: Fill) -> Order:
    """``o`` with ``fill`` among its applied fills, not derived yet (the caller checks
    :func:`has_fill` first)."""
    return msgspec.structs.replace(
        o,
        fills=tuple(sorted((*o.fills, (fill.trade_id, fill.qty)))),
        exchange_order_id=first_id(o.exchange_order_id, fill.exchange_order_id),
        last_ts=max(o.last_ts, fill.ts),
    )


def fills_sum(o: Order) -> float:
    """The quantity of the fills applied to ``o`` (exact sum; one fill needs no summing)."""
    fills = o.fills
    if not fills:
        return 0.0
    return fills[0][1] if len(fills) == 1 else math.fsum(q for _, q in fills)


def derive(o: Order, tolerance: float) -> Order:
    """The state and filled quantity that follow from the order's merged facts."""
    fill_sum = fills_sum(o)
    filled = o.event_filled if o.event_filled >= fill_sum else fill_sum
    qty = o.qty
    terminals = o.terminals
    state: OrderStateName
    if (qty is not None and qty > 0 and filled >= qty - tolerance) or (
        terminals and "filled" in terminals
    ):
        state = "filled"
        if qty is not None and qty > filled:
            filled = qty
    elif terminals:
        strongest = TERMINAL_STRENGTH.__getitem__
        state = terminals[0] if len(terminals) == 1 else max(terminals, key=strongest)
    elif o.cancel_requested:
        state = "pending_cancel"
    elif o.rank >= OPEN_RANK or filled > 0:
        state = "partially_filled" if filled > 0 else "open"
    elif o.rank == UNKNOWN_RANK or not o.sent:
        state = "unknown"
    else:
        state = "pending_new"
    if state == o.state and filled == o.filled:
        return o
    return msgspec.structs.replace(o, state=state, filled=filled)


def first_id(a: str | None, b: str | None) -> str | None:
    """One of two ids regardless of which came first (they are the same id in practice)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)
