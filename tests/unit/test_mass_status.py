"""Reconciliation with the venue as a pure comparison (``plan_sweep``): orphans, vanished
orders, missed fills and backfills, and that a listing delivered twice or in another order
plans the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.mass_status import plan_sweep
from makerflow.operators.order_state import OrderState
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent

MARKET = "binance:BTC/USDT"
T0 = 1_700_000_000_000_000_000


def listed(cid, price=60000.0, status="ack"):
    return OrderEvent(
        ts=T0,
        venue="binance",
        symbol="BTC/USDT",
        client_order_id=cid,
        exchange_order_id=f"x-{cid}",
        status=status,
        side="buy",
        price=price,
        qty=0.001,
    )


def place(cid, ts=T0):
    return OrderIntent(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side="buy",
        price=60000.0,
        qty=0.001,
    )


def fill(tid, cid=None, ts=T0):
    return Fill(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        trade_id=tid,
        client_order_id=cid,
        side="buy",
        price=60000.0,
        qty=0.001,
    )


def state_with(*acked, pending=()):
    s = OrderState(prefix="mf-")
    for cid in (*acked, *pending):
        s.on_intent(place(cid))
    for cid in acked:
        s.on_order_event(listed(cid))
    return s


def plan(state, orders=(), fills=(), in_flight=(), policy="cancel", started=T0):
    return plan_sweep(
        state,
        market=MARKET,
        open_orders=tuple(orders),
        fills=tuple(fills),
        ts=T0 + 10,
        started_ts=started,
        in_flight=frozenset(in_flight),
        policy=policy,
    )


def test_an_orphan_with_our_prefix_is_cancelled_with_an_alert_and_others_are_left_alone():
    p = plan(state_with("mf-a"), [listed("mf-a"), listed("mf-orphan"), listed("manual-1")])
    assert [(c.action, c.client_order_id) for c in p.cancel] == [("cancel", "mf-orphan")]
    assert [a.labels for a in p.alerts] == [{"client_order_id": "mf-orphan", "action": "cancel"}]
    assert {e.client_order_id for e in p.apply} == {"mf-a", "mf-orphan"}
    assert p.look_up == () and p.adopt == ()


def test_an_orphan_is_adopted_when_so_configured():
    p = plan(state_with(), [listed("mf-orphan")], policy="adopt")
    assert p.cancel == () and p.adopt == ("mf-orphan",)
    assert p.alerts[0].labels["action"] == "adopt"


def test_an_order_believed_open_that_the_venue_does_not_list_is_looked_up_unless_in_flight():
    s = state_with("mf-gone", "mf-here", pending=("mf-sending", "mf-lost-at-restart"))
    p = plan(s, [listed("mf-here")], in_flight={"mf-sending"})
    assert sorted(o.client_order_id for o in p.look_up) == ["mf-gone", "mf-lost-at-restart"]


def test_fills_of_known_orders_and_of_this_run_pass_a_backfill_of_strangers_does_not():
    s = state_with("mf-a")
    before = T0 - 1
    p = plan(
        s,
        fills=[fill("1", "mf-a", before), fill("2", "mf-x", before), fill("3", None, T0 + 5)],
    )
    assert [f.trade_id for f in p.fills] == ["1", "3"]


orders_st = st.lists(
    st.sampled_from(["mf-a", "mf-b", "mf-orphan-1", "mf-orphan-2", "manual-1"]), max_size=8
)
fills_st = st.lists(st.sampled_from(["1", "2", "3"]), max_size=6)


@settings(max_examples=200, deadline=None)
@given(orders_st, fills_st, st.randoms(use_true_random=False))
def test_a_listing_delivered_twice_or_reordered_plans_the_same(cids, tids, rnd):
    s = state_with("mf-a", "mf-b")
    orders = [listed(c) for c in cids]
    fills = [fill(t, "mf-a") for t in tids]
    once = plan(s, dict.fromkeys(orders), dict.fromkeys(fills))
    again = list(orders) * 2
    rnd.shuffle(again)
    shuffled_fills = list(fills) * 2
    rnd.shuffle(shuffled_fills)
    twice = plan(s, again, shuffled_fills)

    def norm(p):
        return (
            sorted(e.client_order_id for e in p.apply),
            sorted(f.trade_id for f in p.fills),
            sorted(c.client_order_id or "" for c in p.cancel),
            sorted(o.client_order_id for o in p.look_up),
            sorted(a.labels["client_order_id"] for a in p.alerts),
        )

    assert norm(once) == norm(twice)
