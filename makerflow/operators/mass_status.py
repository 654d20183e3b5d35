"""Reconciliation with the venue (mass status), as a pure comparison.

Given the one order state (:class:`~makerflow.operators.order_state.OrderState`) and what the
venue lists for a market — our open orders and our newest trades — :func:`plan_sweep` says
what to do:

- an open order with our client-id prefix that no intent of ours placed (an orphan) is
  cancelled or adopted, as configured, with an ``OrphanOrder`` alert;
- an order the state believes live that the venue does not list is looked up by client id
  (a lost place, a cancel or fill we never heard of);
- a fill the state never applied is applied (consumers dedup by trade id), unless it is a
  backfill from before the run of an order we never knew: that moves nothing;
- the venue's word on every listed order is applied (idempotent).

No I/O, no clock: the caller passes the listing's time and the run's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from makerflow.operators.order_state import Order, OrderState
from makerflow.schemas.events import Alert, Fill, OrderEvent, OrderIntent
from makerflow.schemas.scopes import market_key_scope

OrphanPolicy = Literal["cancel", "adopt"]
_DOING: dict[OrphanPolicy, str] = {"cancel": "canceling", "adopt": "adopting"}


@dataclass(frozen=True)
class SweepPlan:
    apply: tuple[OrderEvent, ...]
    """The venue's open orders, to apply to the state (emit those that change it)."""
    fills: tuple[Fill, ...]
    """Fills to apply (the state drops those it has already applied)."""
    cancel: tuple[OrderIntent, ...]
    """Orphans to cancel (apply ``apply`` first, so the state holds them)."""
    adopt: tuple[str, ...]
    """Orphans to adopt."""
    look_up: tuple[Order, ...]
    """Orders the state believes live that the venue does not list."""
    alerts: tuple[Alert, ...]


def plan_sweep(
    state: OrderState,
    *,
    market: str,
    open_orders: tuple[OrderEvent, ...],
    fills: tuple[Fill, ...],
    ts: int,
    started_ts: int,
    in_flight: frozenset[str],
    policy: OrphanPolicy = "cancel",
) -> SweepPlan:
    """What to do after the venue listed ``open_orders`` and ``fills`` for ``market`` at
    ``ts``. ``in_flight``: client ids with an intent sent and not answered yet (the
    venue may not list them yet, or list them as they were before);
    ``started_ts``: when this run started (older fills of orders the state does not know
    are a backfill and move nothing)."""
    prefix = state.prefix
    apply: list[OrderEvent] = []
    cancel: list[OrderIntent] = []
    adopt: list[str] = []
    alerts: list[Alert] = []
    listed: set[str] = set()
    for ev in open_orders:
        cid = ev.client_order_id
        if not cid.startswith(prefix):
            continue  # not ours (an order placed by hand): not ours to touch
        if cid in listed:
            continue  # listed twice (a venue's paging overlap): one decision per order
        listed.add(cid)
        apply.append(ev)
        o = state.get(cid)
        orphan = o is None or (not o.sent and not o.adopted and not o.cancel_requested)
        if not orphan:
            continue
        if policy == "cancel":
            cancel.append(
                OrderIntent(
                    ts=ts,
                    venue=ev.venue,
                    symbol=ev.symbol,
                    account=ev.account,
                    action="cancel",
                    client_order_id=cid,
                    reason="orphan: open at the venue, unknown to the order state",
                )
            )
        else:
            adopt.append(cid)
        alerts.append(
            Alert(
                ts=ts,
                name="OrphanOrder",
                severity="warning",
                scope=market_key_scope(market),
                message=(
                    f"order {cid} ({ev.side} {ev.qty} @ {ev.price}) is open at the venue but "
                    f"no intent of ours placed it: {_DOING[policy]} it"
                ),
                labels={"client_order_id": cid, "action": policy},
            )
        )
    look_up = tuple(
        o
        for o in state.open_orders(market)
        if o.client_order_id not in listed and o.client_order_id not in in_flight
    )
    known_fills = tuple(
        {
            (f.venue, f.trade_id): f
            for f in fills
            if f.ts >= started_ts
            or (f.client_order_id is not None and state.get(f.client_order_id) is not None)
        }.values()
    )
    return SweepPlan(
        apply=tuple(apply),
        fills=known_fills,
        cancel=tuple(cancel),
        adopt=tuple(adopt),
        look_up=look_up,
        alerts=tuple(alerts),
    )
