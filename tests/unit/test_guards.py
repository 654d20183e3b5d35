"""Fat-finger guards: pure checks before anything is sent."""

from __future__ import annotations

import math

import pytest

from makerflow.operators.guards import GuardLimits, OpenOrders, check_intent
from makerflow.schemas.events import OrderEvent, OrderIntent

LIMITS = GuardLimits(max_order_notional=10_000, max_open_orders_per_market=3, max_distance_bps=100)


def intent(**kw):
    base = dict(
        ts=1,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id="c1",
        side="buy",
        price=60_000.0,
        qty=0.1,
        reference=60_100.0,
    )
    return OrderIntent(**(base | kw))


def test_a_sane_order_passes():
    assert check_intent(intent(), LIMITS, open_orders=0) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"qty": 0.2}, "guard:max_order_notional"),  # 12 000 > 10 000
        ({"price": 59_000.0}, "guard:max_distance"),  # 183 bps under the reference
        ({"price": 61_000.0, "side": "sell"}, "guard:max_distance"),
        ({"qty": 0.0}, "malformed: quantity"),
        ({"qty": math.nan}, "malformed: quantity"),
        ({"price": math.inf}, "malformed: limit price"),
        ({"price": None}, "malformed: limit price"),
        ({"side": None}, "malformed: place without side"),
        ({"client_order_id": None}, "malformed: place without client_order_id"),
    ],
)
def test_bad_orders_are_refused_with_the_reason(changes, reason):
    got = check_intent(intent(**changes), LIMITS, open_orders=0)
    assert got is not None and got.startswith(reason)


def test_open_order_limit_per_market():
    assert check_intent(intent(), LIMITS, open_orders=2) is None
    got = check_intent(intent(), LIMITS, open_orders=3)
    assert got is not None and got.startswith("guard:max_open_orders")


def test_cancels_always_pass_even_over_limits():
    cancel = intent(action="cancel", price=None, qty=None, side=None)
    assert check_intent(cancel, LIMITS, open_orders=99) is None
    assert check_intent(intent(action="cancel_all", client_order_id=None), LIMITS, 99) is None
    assert check_intent(intent(action="cancel", client_order_id=None), LIMITS, 0) is not None


def test_reference_rules():
    assert check_intent(intent(reference=None), LIMITS, 0) is None
    strict = GuardLimits(require_reference=True)
    assert check_intent(intent(reference=None), strict, 0) == (
        "guard:no_reference: the intent carries no reference price"
    )
    market = intent(order_type="market", price=None, reference=60_000.0, qty=0.5)
    got = check_intent(market, LIMITS, 0)
    assert got is not None and got.startswith("guard:max_order_notional")  # valued at reference


def test_open_orders_follow_order_events():
    def ev(cid, status):
        return OrderEvent(
            ts=1,
            venue="binance",
            symbol="BTC/USDT",
            client_order_id=cid,
            status=status,
            side="buy",
            qty=0.1,
        )

    book = OpenOrders()
    for cid in ("a", "b", "c"):
        book.on_event(ev(cid, "ack"))
    book.on_event(ev("b", "partial"))
    book.on_event(ev("a", "filled"))
    book.on_event(ev("c", "canceled"))
    book.on_event(ev("d", "rejected"))
    assert len(book) == 1 and "b" in book
    assert OpenOrders(book.snapshot()).snapshot() == ("b",)
