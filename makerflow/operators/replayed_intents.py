"""Intents from before this run: what the execution step may still send, as a pure decision.

After a restart the execution service reads intents that were made before it started: the
epoch Bytewax replays after a crash (some of them already sent by the run that died), the
ones produced while it was down, and with ``MAKERFLOW_FROM=beginning`` and no recovery store
the whole topic. A place is not safe to send again: a venue that frees the client id of a
closed order (Binance) would place it twice. A cancel is always safe. So, once the venue's
mass status is in (our open orders and newest trades) and applied to the one order state,
:func:`triage` sorts each intent from before the run (event time before ``started_ns``):

- a place the venue lists open is not sent: the listing is its answer (already applied);
- a place the venue's newest trades name, one of the epoch replayed from a recovery store
  (``restored``), or one still within its time-to-live is sent on to the executor, which
  looks it up by client id first and sends it only if the venue has never seen it (and then
  only within its time-to-live);
- any other place is older than its time-to-live and unknown to the venue's listing: it is
  not sent and not looked up (a topic read from the beginning holds thousands), and is
  answered ``rejected`` (``expired_intent``). Had an earlier run placed it, the order is
  closed (the listing would show it open), and the order state keeps the venue's stronger
  terminal word over this one;
- a cancel (or cancel-all) is sent when its order (or one of its market) is still open in the
  order state or at the venue; a cancel of an order already closed is moot and dropped.

Intents of this run pass unchanged. No I/O, no clock: the caller passes ``now_ns``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from makerflow.operators.order_state import OrderState
from makerflow.schemas.events import OrderEvent, OrderIntent


@dataclass(frozen=True)
class Triage:
    send: tuple[OrderIntent, ...]
    """For the executor, in their order."""
    expired: tuple[OrderEvent, ...]
    """``rejected`` (``expired_intent``) answers, already applied to the state."""
    moot: tuple[OrderIntent, ...]
    """Cancels of orders already closed, and places the venue lists open: not sent."""


def triage(
    intents: Iterable[OrderIntent],
    state: OrderState,
    *,
    started_ns: int,
    now_ns: int,
    ttl_ms: int | None,
    restored: bool,
    listed_open: frozenset[str],
    listed_traded: frozenset[str],
) -> Triage:
    """Sort ``intents`` (one market's, in order; already applied to ``state`` with
    ``on_intent``); see the module docstring. Applies the expired answers to ``state``, so a
    cancel after an expired place is moot."""
    send: list[OrderIntent] = []
    expired: list[OrderEvent] = []
    moot: list[OrderIntent] = []
    for i in intents:
        if i.ts >= started_ns:
            send.append(i)
            continue
        cid = i.client_order_id or ""
        if i.action == "place":
            age_ms = (now_ns - i.ts) / 1e6
            if cid in listed_open:
                moot.append(i)
            elif restored or cid in listed_traded or ttl_ms is None or age_ms <= ttl_ms:
                send.append(i)
            else:
                ev = expired_answer(i, age_ms, ttl_ms)
                state.on_order_event(ev)
                expired.append(ev)
        elif i.action == "cancel":
            o = state.get(cid)
            if cid in listed_open or (o is not None and not o.terminal):
                send.append(i)
            else:
                moot.append(i)
        elif state.open_orders(i.key) or listed_open:
            send.append(i)
        else:
            moot.append(i)
    return Triage(tuple(send), tuple(expired), tuple(moot))


def expired_answer(intent: OrderIntent, age_ms: float, ttl_ms: int) -> OrderEvent:
    """The ``rejected`` answer of a place older than its time-to-live, never sent."""
    return OrderEvent(
        ts=intent.ts,
        venue=intent.venue,
        symbol=intent.symbol,
        account=intent.account,
        client_order_id=intent.client_order_id or "",
        status="rejected",
        side=intent.side or "buy",
        price=intent.price,
        qty=intent.qty or 0.0,
        reason=(
            f"expired_intent: intent is {age_ms:.0f} ms old, older than its time-to-live "
            f"of {ttl_ms} ms"
        ),
    )
