"""The one order state: explicit states, venue-allowed transitions, every input idempotent."""

from __future__ import annotations

import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.order_records import TERMINAL, TRANSITIONS, Order, OrderStateSnapshot
from makerflow.operators.order_state import OrderState
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent, OrderStatus, Side

V, S = "binance", "BTC/USDT"


def place(cid: str, ts: int = 1, side: Side = "buy", price: float = 100.0, qty: float = 0.002):
    return OrderIntent(
        ts=ts,
        venue=V,
        symbol=S,
        action="place",
        client_order_id=cid,
        side=side,
        price=price,
        qty=qty,
    )


def cancel(cid: str, ts: int = 2) -> OrderIntent:
    return OrderIntent(ts=ts, venue=V, symbol=S, action="cancel", client_order_id=cid)


def event(
    cid: str,
    status: OrderStatus,
    ts: int = 2,
    filled: float = 0.0,
    qty: float = 0.002,
    side: Side = "buy",
    price: float = 100.0,
    reason: str = "",
) -> OrderEvent:
    return OrderEvent(
        ts=ts,
        venue=V,
        symbol=S,
        client_order_id=cid,
        exchange_order_id="x-" + cid,
        status=status,
        side=side,
        price=price,
        qty=qty,
        filled_qty=filled,
        reason=reason,
    )


def fill(cid: str | None, trade_id: str, qty: float, ts: int = 3, side: Side = "buy") -> Fill:
    return Fill(
        ts=ts,
        venue=V,
        symbol=S,
        trade_id=trade_id,
        client_order_id=cid,
        side=side,
        price=100.0,
        qty=qty,
    )


def test_a_place_is_pending_new_until_the_venue_acks():
    s = OrderState()
    (t,) = s.on_intent(place("mf-a"))
    assert t.previous is None and t.order.state == "pending_new"
    t2 = s.on_order_event(event("mf-a", "ack"))
    assert t2 is not None and (t2.previous, t2.order.state) == ("pending_new", "open")
    assert s.on_order_event(event("mf-a", "ack")) is None  # a duplicate changes nothing
    assert s.on_intent(place("mf-a")) == ()  # a replayed intent too


def test_a_partial_update_before_its_fill_counts_the_quantity_once():
    # Found on main (in the quoter): 0.001 of 0.002 reported by the order update, then the
    # fill of that same 0.001; the order must stay open with 0.001 filled.
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002))
    s.on_order_event(event("mf-a", "partial", filled=0.001))
    eff = s.on_fill(fill("mf-a", "t1", 0.001))
    assert eff is not None and eff.order is not None
    assert eff.order_filled_delta == 0.0
    order = s.get("mf-a")
    assert order is not None
    assert order.state == "partially_filled" and order.filled == pytest.approx(0.001)
    assert order.remaining == pytest.approx(0.001)


def test_a_fill_before_its_order_update_counts_once_too():
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002))
    eff = s.on_fill(fill("mf-a", "t1", 0.001))
    assert eff is not None and eff.order_filled_delta == pytest.approx(0.001)
    t = s.on_order_event(event("mf-a", "partial", filled=0.001))
    assert t is not None and not t.changed_state and t.order.filled == pytest.approx(0.001)
    assert s.on_order_event(event("mf-a", "partial", filled=0.001)) is None


def test_a_fill_is_applied_once_per_venue_and_trade_id():
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002))
    assert s.on_fill(fill("mf-a", "t1", 0.001)) is not None
    assert s.on_fill(fill("mf-a", "t1", 0.001)) is None
    assert s.get("mf-a").filled == pytest.approx(0.001)  # type: ignore[union-attr]
    other_venue = msgspec.structs.replace(fill(None, "t1", 0.001), venue="okx")
    assert s.on_fill(other_venue) is not None  # same trade id on another venue is another trade


def test_fills_that_add_up_to_the_quantity_fill_the_order():
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002))
    s.on_fill(fill("mf-a", "t1", 0.001))
    eff = s.on_fill(fill("mf-a", "t2", 0.001))
    assert eff is not None and eff.order is not None and eff.order.state == "filled"
    assert s.open_orders() == ()


def test_unknown_keeps_funds_and_resolves_to_what_the_venue_says():
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002, price=100.0))
    t = s.on_order_event(event("mf-a", "unknown", reason="timeout"))
    assert t is not None and t.order.state == "unknown"
    ex = s.exposure()
    assert (ex.buy_qty, ex.buy_notional, ex.orders) == (pytest.approx(0.002), 0.2, 1)
    assert s.counts() == {f"{V}:{S}": 1}
    late_ack = s.on_order_event(event("mf-a", "ack", ts=5))
    assert late_ack is not None and (late_ack.previous, late_ack.order.state) == (
        "unknown",
        "open",
    )
    # A late 'unknown' (the sink's timeout arriving after the venue's ack) changes nothing.
    late = s.on_order_event(event("mf-a", "unknown", ts=6))
    assert late is not None and late.order.state == "open"
    s2 = OrderState()
    s2.on_intent(place("mf-b"))
    s2.on_order_event(event("mf-b", "unknown"))
    t2 = s2.on_order_event(event("mf-b", "rejected", reason="lookup: not found"))
    assert t2 is not None and t2.order.state == "rejected" and s2.exposure().orders == 0


def test_terminal_states_stay_terminal():
    s = OrderState()
    s.on_intent(place("mf-a"))
    s.on_order_event(event("mf-a", "canceled", ts=5))
    for late in (event("mf-a", "ack", ts=3), event("mf-a", "partial", ts=4, filled=0.0)):
        t = s.on_order_event(late)
        assert t is None or not t.changed_state
    assert s.get("mf-a").state == "canceled"  # type: ignore[union-attr]
    assert s.conflicts == 0
    # a place refused, then the sink's "last known" ack of a cancel that failed as well
    s.on_intent(place("mf-b"))
    s.on_order_event(msgspec.structs.replace(event("mf-b", "rejected"), exchange_order_id=None))
    t = s.on_order_event(
        msgspec.structs.replace(event("mf-b", "ack", ts=3), exchange_order_id=None)
    )
    assert t is None or t.order.state == "rejected"
    assert s.open_orders() == ()


def test_a_canceled_order_whose_fills_complete_it_is_filled_and_counted_as_a_conflict():
    s = OrderState()
    s.on_intent(place("mf-a", qty=0.002))
    s.on_order_event(event("mf-a", "canceled", filled=0.001))
    s.on_fill(fill("mf-a", "t1", 0.001))
    assert s.get("mf-a").state == "canceled"  # type: ignore[union-attr]
    s.on_fill(fill("mf-a", "t2", 0.001))
    assert s.get("mf-a").state == "filled"  # type: ignore[union-attr]
    assert s.conflicts == 1


def test_cancel_is_pending_until_the_venue_closes_the_order():
    s = OrderState()
    s.on_intent(place("mf-a"))
    s.on_order_event(event("mf-a", "ack"))
    (t,) = s.on_intent(cancel("mf-a"))
    assert (t.previous, t.order.state) == ("open", "pending_cancel")
    # The sink reports a failed cancel as the order's live state: still pending.
    assert s.on_order_event(event("mf-a", "ack", ts=4, reason="cancel_rejected")) is not None
    assert s.get("mf-a").state == "pending_cancel"  # type: ignore[union-attr]
    s.on_fill(fill("mf-a", "t1", 0.001, ts=5))
    assert s.get("mf-a").state == "pending_cancel"  # type: ignore[union-attr]
    assert s.exposure().buy_qty == pytest.approx(0.001)
    t2 = s.on_order_event(event("mf-a", "canceled", ts=6, filled=0.001))
    assert t2 is not None and t2.order.state == "canceled"


def test_cancel_all_marks_every_open_order_of_its_market():
    s = OrderState()
    s.on_intent(place("mf-a"))
    s.on_intent(place("mf-b", side="sell", price=101.0))
    other = msgspec.structs.replace(place("mf-c"), symbol="ETH/USDT")
    s.on_intent(other)
    done = s.on_intent(OrderIntent(ts=3, venue=V, symbol=S, action="cancel_all"))
    assert sorted(t.order.client_order_id for t in done) == ["mf-a", "mf-b"]
    assert s.get("mf-c").state == "pending_new"  # type: ignore[union-attr]


def test_orphans_are_listed_until_adopted_or_canceled_and_foreign_ids_are_ignored():
    s = OrderState(prefix="mf-")
    t = s.on_order_event(event("mf-old-b0-1", "ack"))
    assert t is not None and t.order.state == "open" and not t.order.sent
    assert [o.client_order_id for o in s.orphans()] == ["mf-old-b0-1"]
    assert s.on_order_event(event("manual-1", "ack")) is None
    assert s.ignored == 1 and s.get("manual-1") is None
    adopted = s.adopt("mf-old-b0-1")
    assert adopted is not None and adopted.adopted and s.orphans() == ()
    s.on_order_event(event("mf-old-s0-2", "ack", side="sell"))
    s.on_intent(cancel("mf-old-s0-2"))
    assert s.orphans() == ()  # being canceled
    # A fill of a foreign order is still an effect (it moved our balances), with no order.
    eff = s.on_fill(fill("manual-1", "t9", 0.5))
    assert eff is not None and eff.order is None


def test_a_fill_first_waits_for_its_order_and_joins_it():
    s = OrderState()
    eff = s.on_fill(fill("mf-a", "t1", 0.001))
    assert eff is not None and eff.order is None and s.get("mf-a") is None
    assert s.open_orders() == ()  # a fill alone makes no order of unknown size
    assert s.on_fill(fill("mf-a", "t1", 0.001)) is None  # still a duplicate
    s.on_order_event(event("mf-a", "partial", filled=0.001, qty=0.002))
    s.on_intent(place("mf-a", qty=0.002))
    o = s.get("mf-a")
    assert o is not None and o.sent and o.qty == 0.002 and o.filled == pytest.approx(0.001)
    assert o.fills == (("t1", 0.001),)
    s2 = OrderState()
    s2.on_fill(fill("mf-b", "t1", 0.001))
    s2.on_intent(place("mf-b", qty=0.002))
    assert s2.get("mf-b").state == "partially_filled"  # type: ignore[union-attr]


def test_memory_of_terminal_orders_is_bounded_and_late_events_do_not_revive_them():
    s = OrderState(max_terminal=2, max_tombstones=10, max_trade_ids=10)
    for i in range(5):
        s.on_intent(place(f"mf-{i}"))
        s.on_order_event(event(f"mf-{i}", "canceled"))
    s.on_intent(place("mf-open"))
    assert len(s) == 3  # two terminal, one open
    assert s.on_order_event(event("mf-0", "canceled")) is None
    assert s.get("mf-0") is None and s.orphans() == ()
    assert len(s.snapshot().trade_ids) == 0
    for i in range(20):
        s.on_fill(fill(None, f"t{i}", 0.1))
    assert len(s.snapshot().trade_ids) == 10


def test_snapshot_restores_the_same_state_and_pickles():
    s = OrderState()
    s.on_intent(place("mf-a"))
    s.on_order_event(event("mf-a", "partial", filled=0.001))
    s.on_fill(fill("mf-a", "t1", 0.001))
    s.on_order_event(event("mf-b", "ack"))
    snap = pickle.loads(pickle.dumps(s.snapshot()))
    assert isinstance(snap, OrderStateSnapshot)
    r = OrderState(snapshot=snap)
    assert r.snapshot() == s.snapshot()
    assert r.on_fill(fill("mf-a", "t1", 0.001)) is None  # dedup survives the restore
    assert [o.client_order_id for o in r.orphans()] == ["mf-b"]


# --- property: any delivery of an order life ends in the in-order state ------------------

LOT = 0.001


@st.composite
def order_life(draw: Any, cid: str, side: Side) -> list[tuple[str, Any]]:
    """One order's life as the quoter and the venue produce it, in causal order."""
    lots = draw(st.integers(min_value=1, max_value=4))
    qty = lots * LOT
    price = 100.0 if side == "buy" else 101.0
    ts = 1
    items: list[tuple[str, Any]] = [("intent", place(cid, ts=ts, side=side, price=price, qty=qty))]

    def ev(status: OrderStatus, filled: float, reason: str = "") -> tuple[str, OrderEvent]:
        nonlocal ts
        ts += 1
        e = event(cid, status, ts=ts, filled=filled, qty=qty, side=side, price=price, reason=reason)
        return ("event", e)

    if draw(st.booleans()):
        items.append(ev("unknown", 0.0, "timeout"))
    if draw(st.integers(0, 5)) == 0:
        items.append(ev("rejected", 0.0, "insufficient balance"))
        return items
    items.append(ev("ack", 0.0))
    end = draw(st.sampled_from(["filled", "canceled", "expired", "open"]))
    n_fills = lots if end == "filled" else draw(st.integers(0, lots - 1))
    cum = 0
    for i in range(n_fills):
        cum += 1
        ts += 1
        items.append(("fill", fill(cid, f"{cid}-t{i}", LOT, ts=ts, side=side)))
        status: OrderStatus = "filled" if cum == lots else "partial"
        if draw(st.booleans()) or status == "filled":
            items.append(ev(status, cum * LOT))
    if end in ("canceled", "open") and draw(st.booleans()):
        ts += 1
        items.append(("intent", cancel(cid, ts=ts)))
        if end == "canceled" or draw(st.booleans()):
            items.append(ev("ack", cum * LOT, "cancel_rejected: timeout"))
    if end in ("canceled", "expired"):
        items.append(ev(end, cum * LOT))
    return items


def _apply(s: OrderState, item: tuple[str, Any]) -> list[tuple[Any, Any]]:
    kind, x = item
    if kind == "intent":
        return [(t.previous, t.order.state) for t in s.on_intent(x)]
    if kind == "event":
        t = s.on_order_event(x)
        return [] if t is None else [(t.previous, t.order.state)]
    eff = s.on_fill(x)
    if eff is None or eff.order is None:
        return []
    return [(eff.previous, eff.order.state)]


def _orders(s: OrderState) -> dict[str, Order]:
    return {o.client_order_id: o for o in s.snapshot().orders}


@st.composite
def deliveries(draw: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Two order lives in causal order, and one delivery of them: duplicated, reordered,
    delayed, with each life's place intent before its cancel intent."""
    lives = [draw(order_life("mf-s-b0-1", "buy")), draw(order_life("mf-s-s0-2", "sell"))]
    in_order = [item for life in lives for item in life]
    dupes = draw(st.lists(st.sampled_from(in_order), max_size=6))
    shuffled = draw(st.permutations(in_order + dupes))
    # Intents are made by the owner of the state, so it sees its own place before its own
    # cancel; venue events and fills may come before, between or after them, however often.
    delivered: list[tuple[str, Any]] = []
    seen_place: set[str] = set()
    held: list[tuple[str, Any]] = []
    for item in shuffled:
        kind, x = item
        if kind == "intent" and x.action == "cancel" and x.client_order_id not in seen_place:
            held.append(item)
            continue
        delivered.append(item)
        if kind == "intent" and x.action == "place":
            seen_place.add(x.client_order_id)
            delivered.extend(h for h in held if h[1].client_order_id == x.client_order_id)
            held = [h for h in held if h[1].client_order_id != x.client_order_id]
    return in_order, delivered + held


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_delivery_ends_in_the_in_order_state(case):
    in_order, delivered = case
    expected = OrderState(prefix="mf-")
    for item in in_order:
        for before, after in _apply(expected, item):
            assert before is None or after == before or after in TRANSITIONS[before]
    got = OrderState(prefix="mf-")
    for item in delivered:
        for before, after in _apply(got, item):
            assert before is None or after == before or after in TRANSITIONS[before], (
                before,
                after,
            )
    assert _orders(got) == _orders(expected)
    # Every trade counted once, whichever stream said it first.
    for o in _orders(got).values():
        assert o.filled <= (o.qty or 0.0) + 1e-12
        assert len({tid for tid, _ in o.fills}) == len(o.fills)
        if o.state in TERMINAL:
            assert o.remaining == 0.0
