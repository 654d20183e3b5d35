"""Open-order reconciliation: orphans, missing orders, mismatches, in-flight grace."""

from __future__ import annotations

import pytest

from makerflow.operators.recon_orders import (
    MISMATCH_ALERT,
    MISSING_ALERT,
    ORPHAN_ALERT,
    ExchangeOpenOrders,
    ExchangeOrder,
    OpenOrderView,
    diff_alerts,
    reconcile_open_orders,
)
from makerflow.schemas.events import OrderEvent
from makerflow.venue import exchange_order_from_ccxt

S = 1_000_000_000
T = 1_700_000_000 * S
GRACE = 5 * S


def ev(cid: str, status: str, ts: int, *, xid: str | None = None, price=100.0, qty=1.0, filled=0.0):
    return OrderEvent(
        ts=ts,
        venue="local",
        symbol="BTC/USDT",
        client_order_id=cid,
        exchange_order_id=xid,
        status=status,  # type: ignore[arg-type]
        side="buy",
        price=price,
        qty=qty,
        filled_qty=filled,
    )


def xo(xid: str, cid: str | None, ts: int, *, price=100.0, qty=1.0, filled=0.0, side="buy"):
    return ExchangeOrder("BTC/USDT", side, xid, cid, price, qty, filled, ts)  # type: ignore[arg-type]


def listing(ts: int, *orders: ExchangeOrder) -> ExchangeOpenOrders:
    return ExchangeOpenOrders("local", "main", ts, tuple(orders))


def view(*events: OrderEvent) -> OpenOrderView:
    v = OpenOrderView()
    for e in events:
        v.apply(e)
    return v


LAG = 300 * S


def recon(v: OpenOrderView, exch: ExchangeOpenOrders):
    return reconcile_open_orders(v, exch, grace_ns=GRACE, max_view_lag_ns=LAG)


def test_view_tracks_open_orders_and_ignores_stale_events() -> None:
    v = view(
        ev("a", "ack", T),
        ev("b", "ack", T),
        ev("b", "partial", T + 2 * S, filled=0.5),
        ev("c", "ack", T),
        ev("c", "filled", T + S),
        ev("c", "ack", T),  # a duplicate ack after the fill must not reopen c
        ev("a", "canceled", T + 3 * S),
    )
    assert [(o.client_order_id, o.state) for o in v.open_orders()] == [("b", "partially_filled")]
    again = OpenOrderView.from_state(v.state())
    assert again.open_orders() == v.open_orders()


def test_agreeing_views_are_ok() -> None:
    v = view(ev("a", "ack", T, xid="1"), ev("b", "ack", T, xid="2"))
    diff = recon(v, listing(T + 60 * S, xo("1", "a", T), xo("2", "b", T)))
    assert diff.ok and diff.matched == 2
    assert diff_alerts(diff) == []


def test_orphan_on_the_exchange_and_missing_order_are_reported() -> None:
    # Our events run to T+30 s: an order created at T+10 s would be known by now were it ours.
    v = view(ev("a", "ack", T, xid="1"), ev("gone", "ack", T, xid="9"), ev("z", "ack", T + 30 * S))
    exch = listing(
        T + 60 * S, xo("1", "a", T), xo("7", "manual-order", T + 10 * S), xo("8", "z", T + 30 * S)
    )
    diff = recon(v, exch)
    assert [x.exchange_order_id for x in diff.orphans] == ["7"]
    assert [o.client_order_id for o in diff.missing] == ["gone"]
    alerts = {a.name: a for a in diff_alerts(diff)}
    assert set(alerts) == {ORPHAN_ALERT, MISSING_ALERT}
    assert alerts[ORPHAN_ALERT].severity == "critical"
    assert "manual-order" in alerts[ORPHAN_ALERT].message
    assert "cid=gone" in alerts[MISSING_ALERT].message
    assert alerts[MISSING_ALERT].labels == {"venue": "local", "account": "main", "count": "1"}


def test_orders_in_flight_are_not_judged() -> None:
    now = T + 60 * S
    # Placed 1 s before the list was taken: the exchange may not list it yet.
    v = view(ev("fresh", "new", now - S))
    # Listed by the exchange 1 s ago: our ack may still be on its way.
    diff = recon(v, listing(now, xo("5", "other", now - S)))
    assert diff.ok


def test_a_view_still_reading_its_backlog_raises_no_false_alarm() -> None:
    """A restart: the exchange lists orders our view has not reached yet, and our view still
    holds orders whose fills are further down the backlog."""
    exch = listing(T + 3_600 * S, xo("1", "a", T + 1_000 * S))
    empty = recon(view(), exch)
    assert empty.ok and empty.unjudged == "no order events seen yet"
    behind = recon(view(ev("old", "ack", T, xid="0")), exch)
    assert behind.ok and "behind the listing" in behind.unjudged
    # Caught up (events up to 2 s before the listing): both findings stand.
    caught = recon(view(ev("old", "ack", T, xid="0"), ev("b", "canceled", T + 3_598 * S)), exch)
    assert [x.exchange_order_id for x in caught.orphans] == ["1"]
    assert [o.client_order_id for o in caught.missing] == ["old"]
    assert caught.unjudged == ""


def test_mismatch_of_price_size_and_fills() -> None:
    v = view(ev("a", "ack", T, xid="1", price=100.0, qty=1.0))
    exch = listing(T + 60 * S, xo("1", "a", T, price=101.0, qty=1.0, filled=0.4))
    diff = recon(v, exch)
    assert len(diff.mismatched) == 1
    assert "price 100.0 vs exchange 101.0" in diff.mismatched[0].what
    assert "filled 0.0 vs exchange 0.4" in diff.mismatched[0].what
    assert [a.name for a in diff_alerts(diff)] == [MISMATCH_ALERT]


def test_matching_by_exchange_id_when_client_id_is_absent() -> None:
    v = view(ev("a", "ack", T, xid="42"))
    diff = recon(v, listing(T + 60 * S, xo("42", None, T)))
    assert diff.ok and diff.matched == 1


def test_listing_of_some_symbols_only_judges_those() -> None:
    v = view(ev("a", "ack", T, xid="1"))
    other = ExchangeOpenOrders("local", "main", T + 60 * S, (), symbols=("ETH/USDT",))
    assert recon(v, other).ok


def test_the_venue_layer_translates_listed_open_orders() -> None:
    raw = {
        "id": "123",
        "clientOrderId": "mf-1",
        "symbol": "BTC/USDT",
        "side": "sell",
        "price": 30000.5,
        "amount": 0.01,
        "filled": 0.0,
        "timestamp": 1_700_000_000_123,
    }
    o = exchange_order_from_ccxt(raw)
    assert o == ExchangeOrder(
        "BTC/USDT", "sell", "123", "mf-1", 30000.5, 0.01, 0.0, raw["timestamp"] * 1_000_000
    )
    with pytest.raises(ValueError, match="not a ccxt open order"):
        exchange_order_from_ccxt({"id": "1", "symbol": "BTC/USDT", "side": "hold", "amount": 1})
    with pytest.raises(ValueError, match="no amount"):
        exchange_order_from_ccxt({"id": "1", "symbol": "BTC/USDT", "side": "buy"})
    # the venue's word, as the private stream and the sink read it: open with fills, upper case
    partial = exchange_order_from_ccxt({**raw, "side": "SELL", "filled": 0.004})
    assert (partial.side, partial.filled) == ("sell", 0.004)


def test_orders_without_our_prefix_are_orphans_at_once() -> None:
    """Placed by hand (or by another system): no event of ours can ever explain it, even if a
    private-stream snapshot adopted it into our view."""
    exch = listing(T + 60 * S, xo("1", "mf-a", T + 59 * S), xo("2", "by-hand", T + 59 * S))
    adopted = view(ev("by-hand", "ack", T + 59 * S, xid="2"))
    for v in (view(), adopted):
        diff = reconcile_open_orders(v, exch, grace_ns=GRACE, max_view_lag_ns=LAG, own_prefix="mf-")
        assert [x.client_order_id for x in diff.orphans] == ["by-hand"]
        assert diff.missing == ()


def test_the_view_reads_the_order_state_a_closed_order_stays_closed() -> None:
    # Main's view let the newest event time win: a failed cancel reported as 'ack' with the
    # cancel's (later) time reopened an order the venue had already canceled.
    v = view(ev("a", "ack", T), ev("a", "canceled", T + S), ev("a", "ack", T + 2 * S))
    assert v.open_orders() == []
    diff = recon(v, listing(T + 60 * S))
    assert diff.ok


def test_an_order_whose_answer_was_lost_is_open_until_the_venue_says() -> None:
    v = view(ev("u", "unknown", T), ev("z", "ack", T + 58 * S))
    assert [(o.client_order_id, o.state) for o in v.open_orders()] == [
        ("u", "unknown"),
        ("z", "open"),
    ]
    diff = recon(v, listing(T + 60 * S, xo("8", "z", T + 58 * S)))
    assert [o.client_order_id for o in diff.missing] == ["u"]  # the venue does not have it


def test_fills_move_the_views_filled_quantity_once() -> None:
    from makerflow.schemas.events import Fill

    v = view(ev("a", "ack", T, xid="1", qty=1.0))
    f = Fill(
        ts=T + S,
        venue="local",
        symbol="BTC/USDT",
        trade_id="t1",
        client_order_id="a",
        side="buy",
        price=100.0,
        qty=0.4,
    )
    v.apply_fill(f)
    v.apply_fill(f)
    exch = listing(T + 60 * S, xo("1", "a", T, filled=0.4))
    assert recon(v, exch).ok
    again = OpenOrderView.from_state(v.state())
    assert again.open_orders() == v.open_orders()
