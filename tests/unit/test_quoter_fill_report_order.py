"""Found while backtesting issue 13's table: the position limit is checked against an
inventory that has not yet seen a fill the order events already reported.

The venue reports a fill twice: an ``OrderEvent`` (status ``filled``) and a ``Fill``. Live
they come on two streams (ccxt's ``watch_orders`` and ``watch_my_trades``) in either order;
the backtest venue delivers the order event first. ``Quoter.on_order_event`` requotes the
freed slot at once, with ``self.inventory`` still without the fill (``on_fill`` moves it), so
the replacement is sized and limited as if the fill had not happened. On the recorded BTC
data with ``maker_fee_bps = 0`` the default GLFT quoter reached +0.0103 BTC against
``max_position`` 0.01 this way (three bids filled within 0.1 s, each replaced on its order
event before its fill was booked). The quoter now prices from the fills plus what order
updates reported beyond them (``OrderState.unbooked``).
"""

from __future__ import annotations

import pytest

from makerflow.operators.quoting import Quoter
from makerflow.operators.quoting_config import QuotingParams
from tests.unit.test_quoter import MARKET, PARAMS, fill, order_event, places, tick


def _quoter(**changes: float) -> Quoter:
    params: QuotingParams = PARAMS.replace({"max_position": 0.1, "size_skew": 0.0, **changes})
    return Quoter(MARKET, params)


def test_fill_booked_first_stops_the_side_at_the_limit() -> None:
    """The order that works today: Fill, then its order event."""
    q = _quoter()
    bid = next(i for i in places(q.on_tick(tick(0))) if i.side == "buy")
    q.on_order_event(order_event(0.1, bid, "ack"))
    out = q.on_fill(fill(0.2, "buy", 0.1, bid.price or 0.0, bid.client_order_id, tid="f1"))
    out2 = q.on_order_event(order_event(0.2, bid, "filled", filled=0.1))
    new_bids = [i for i in places(out) + places(out2) if i.side == "buy"]
    assert new_bids == []  # at the limit: no new bid
    assert q.inventory == pytest.approx(0.1)


def test_order_event_first_does_not_place_past_the_limit() -> None:
    """The same fill reported in the other order must not put a bid past the limit."""
    q = _quoter()
    bid = next(i for i in places(q.on_tick(tick(0))) if i.side == "buy")
    q.on_order_event(order_event(0.1, bid, "ack"))
    out = q.on_order_event(order_event(0.2, bid, "filled", filled=0.1))
    out2 = q.on_fill(fill(0.2, "buy", 0.1, bid.price or 0.0, bid.client_order_id, tid="f1"))
    new_bids = [i for i in places(out) + places(out2) if i.side == "buy"]
    # inventory 0.1 = max_position once the fill is in: a new bid could only grow it
    assert new_bids == []
