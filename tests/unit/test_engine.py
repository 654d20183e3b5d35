"""The pure matching engine: validation, holds, price-time priority, fees, public flow."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from makerflow.exchange.engine import EngineError, MarketSpec, MatchingEngine

SPEC = MarketSpec(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    min_notional=D(5),
    maker_fee=D("0.001"),
    taker_fee=D("0.002"),
)


def engine():
    e = MatchingEngine([SPEC], start_time_ms=1000)
    for acct in ("a", "b", "c"):
        e.add_account(acct, {"USDT": D(100_000), "BTC": D(10)})
    return e


def place(e, acct, side, qty, price=None, cid=None, otype="LIMIT", **kw):
    cid = cid or f"{acct}-{side}-{price}-{qty}-{len(e.all_orders(acct, 'BTCUSDT'))}"
    return e.place(
        acct, "BTCUSDT", side, otype, D(qty), D(price) if price else None, client_order_id=cid, **kw
    )


def test_limit_order_holds_quote_and_cancel_releases_it():
    e = engine()
    order, out = place(e, "a", "BUY", "0.5", "60000.00")
    assert order.status == "NEW" and [u.exec_type for u in out.updates] == ["NEW"]
    bal = e.balances("a")["USDT"]
    assert (bal.free, bal.locked) == (D(70_000), D(30_000))
    e.cancel("a", "BTCUSDT", order.order_id, None)
    bal = e.balances("a")["USDT"]
    assert (bal.free, bal.locked) == (D(100_000), D(0))
    assert e.open_orders("a") == []


def test_price_then_time_priority_and_partial_fills():
    e = engine()
    first, _ = place(e, "a", "SELL", "1", "60010.00")
    second, _ = place(e, "b", "SELL", "1", "60010.00")
    better, _ = place(e, "c", "SELL", "0.5", "60005.00")
    taker, out = place(e, "c", "BUY", "1.2", "60010.00", cid="take")
    fills = [
        (u.order.client_order_id, u.execution.price, u.execution.qty)
        for u in out.updates
        if u.execution and not u.execution.is_maker
    ]
    assert fills == [("take", D("60005.00"), D("0.5")), ("take", D("60010.00"), D("0.7"))]
    makers = {
        u.order.order_id: u.order.status
        for u in out.updates
        if u.execution and u.execution.is_maker
    }
    assert makers == {better.order_id: "FILLED", first.order_id: "PARTIALLY_FILLED"}
    assert taker.status == "FILLED"
    assert e.get_order("a", "BTCUSDT", first.order_id, None).remaining == D("0.3")
    assert e.get_order("b", "BTCUSDT", second.order_id, None).executed_qty == D(0)


def test_fees_are_charged_in_the_asset_received_maker_and_taker_rates():
    e = engine()
    place(e, "a", "SELL", "1", "60000.00")
    place(e, "b", "BUY", "1", "60000.00")
    a, b = e.balances("a"), e.balances("b")
    # The maker sold: receives USDT minus 0.1 %.
    assert a["USDT"].free == D(100_000) + D(60_000) * D("0.999")
    assert a["BTC"].free + a["BTC"].locked == D(9)
    # The taker bought: receives BTC minus 0.2 %.
    assert b["BTC"].free == D(10) + D("0.998")
    assert b["USDT"].free == D(40_000) and b["USDT"].locked == 0
    [ta] = e.my_trades("a", "BTCUSDT")
    [tb] = e.my_trades("b", "BTCUSDT")
    assert (ta.is_maker, ta.commission_asset, ta.commission) == (True, "USDT", D("60.000"))
    assert (tb.is_maker, tb.commission_asset, tb.commission) == (False, "BTC", D("0.002"))


def test_buy_filled_below_its_limit_returns_the_unused_hold():
    e = engine()
    place(e, "a", "SELL", "1", "59000.00")
    place(e, "b", "BUY", "1", "60000.00")
    usdt = e.balances("b")["USDT"]
    assert usdt.locked == 0 and usdt.free == D(100_000) - D(59_000)


@pytest.mark.parametrize(
    ("qty", "price", "message"),
    [
        ("0.0015", "60000.00", "LOT_SIZE"),
        ("0.0001", "60000.00", "LOT_SIZE"),
        ("0.001", "60000.005", "PRICE_FILTER"),
        ("0.001", "4000.00", "NOTIONAL"),
    ],
)
def test_filters_reject_bad_orders(qty, price, message):
    e = engine()
    with pytest.raises(EngineError, match=message) as err:
        place(e, "a", "BUY", qty, price)
    assert err.value.code == -1013
    assert e.all_orders("a", "BTCUSDT") == []


def test_insufficient_funds_and_duplicate_client_ids_are_refused():
    e = engine()
    with pytest.raises(EngineError, match="insufficient balance") as err:
        place(e, "a", "BUY", "2", "60000.00")
    assert err.value.code == -2010
    with pytest.raises(EngineError, match="insufficient balance"):
        place(e, "a", "SELL", "11", "60000.00")
    place(e, "a", "BUY", "0.1", "60000.00", cid="same")
    with pytest.raises(EngineError, match="Duplicate order sent") as dup:
        place(e, "a", "BUY", "0.1", "59000.00", cid="same")
    assert dup.value.code == -2010
    # Another account may use the same id.
    place(e, "b", "BUY", "0.1", "59000.00", cid="same")


def test_a_client_id_is_refused_only_while_its_order_is_open():
    """Binance: ``newClientOrderId`` is unique among open orders; once the order with it is
    closed (canceled, filled, expired) the id can be used again, and a look-up by it finds
    the newest order."""
    e = engine()
    first, _ = place(e, "a", "BUY", "0.1", "60000.00", cid="re")
    e.cancel("a", "BTCUSDT", None, "re")
    second, _ = place(e, "a", "BUY", "0.2", "59000.00", cid="re")
    assert second.order_id != first.order_id
    assert e.get_order("a", "BTCUSDT", None, "re").order_id == second.order_id
    assert e.get_order("a", "BTCUSDT", first.order_id, None).status == "CANCELED"
    with pytest.raises(EngineError, match="Duplicate order sent"):
        place(e, "a", "BUY", "0.1", "58000.00", cid="re")
    # Filled orders free their id too.
    place(e, "b", "SELL", "0.2", "59000.00", cid="taker")
    assert e.get_order("a", "BTCUSDT", None, "re").status == "FILLED"
    third, _ = place(e, "a", "BUY", "0.1", "58000.00", cid="re")
    assert [o.client_order_id for o in e.all_orders("a", "BTCUSDT")] == ["re", "re", "re"]
    assert e.open_orders("a")[0].order_id == third.order_id
    # A refused duplicate changes nothing: no hold, no order.
    assert e.balances("a")["USDT"].locked == D("5800.00")


def test_post_only_rejected_when_it_would_take_internal_or_public_liquidity():
    e = engine()
    place(e, "b", "SELL", "0.1", "60000.05")
    with pytest.raises(EngineError, match="immediately match"):
        place(e, "a", "BUY", "0.1", "60000.05", otype="LIMIT_MAKER")  # internal ask
    e.on_book_top("BTCUSDT", D("60000.00"), D(1), D("60000.01"), D(1))
    with pytest.raises(EngineError, match="immediately match"):
        place(e, "a", "BUY", "0.1", "60000.01", otype="LIMIT_MAKER")  # public ask
    maker, _ = place(e, "a", "BUY", "0.1", "60000.00", otype="LIMIT_MAKER")
    assert [o.order_id for o in e.open_orders("a")] == [maker.order_id]
    assert e.balances("b")["BTC"].locked == D("0.1")


def test_market_order_takes_public_top_and_expires_the_rest():
    e = engine()
    e.on_book_top("BTCUSDT", D("60000.00"), D("0.3"), D("60000.01"), D("0.4"))
    order, out = place(e, "a", "BUY", "1", otype="MARKET")
    assert order.status == "EXPIRED" and order.executed_qty == D("0.4")
    assert [u.exec_type for u in out.updates] == ["NEW", "TRADE", "EXPIRED"]
    usdt = e.balances("a")["USDT"]
    assert usdt.locked == 0 and usdt.free == D(100_000) - D("0.4") * D("60000.01")
    # That public liquidity is consumed until the next top of book.
    _, _, depth_asks = e.depth("BTCUSDT")
    assert depth_asks == []


def test_public_trades_and_moves_fill_resting_orders_as_maker():
    e = engine()
    bid, _ = place(e, "a", "BUY", "0.5", "59990.00")
    ask, _ = place(e, "a", "SELL", "0.5", "60010.00")
    e.set_time(2000)
    out = e.on_public_trade("BTCUSDT", D("59995.00"), D("1"), "SELL")
    assert out.updates == ()  # the seller did not reach our bid
    out = e.on_public_trade("BTCUSDT", D("59990.00"), D("0.2"), "SELL")
    assert [(u.order.order_id, u.execution.qty, u.execution.is_maker) for u in out.updates] == [
        (bid.order_id, D("0.2"), True)
    ]
    assert out.accounts == frozenset({"a"})
    e.set_time(3000)
    out = e.on_book_top("BTCUSDT", D("60011.00"), D("2"), D("60012.00"), D("2"))
    assert [(u.order.order_id, u.execution.price, u.order.status) for u in out.updates] == [
        (ask.order_id, D("60010.00"), "FILLED")
    ]
    [t1, t2] = e.my_trades("a", "BTCUSDT")
    assert (t1.time, t2.time) == (2000, 3000)


def test_clock_only_moves_forward_and_stamps_orders():
    e = engine()
    e.set_time(5000)
    e.set_time(4000)
    order, _ = place(e, "a", "BUY", "0.1", "50000.00")
    assert e.time_ms == 5000 and order.time == 5000


def test_cancel_all_only_touches_the_callers_orders():
    e = engine()
    for i in range(3):
        place(e, "a", "BUY", "0.1", f"5000{i}.00")
    place(e, "b", "BUY", "0.1", "50000.00")
    orders, out = e.cancel_all("a", "BTCUSDT")
    assert len(orders) == 3 and all(u.exec_type == "CANCELED" for u in out.updates)
    assert e.open_orders("a") == [] and len(e.open_orders("b")) == 1
    with pytest.raises(EngineError, match="Unknown order"):
        e.cancel_all("a", "BTCUSDT")


def test_the_venue_expires_an_order_and_its_hold_is_released():
    e = engine()
    order, _ = place(e, "a", "BUY", "0.5", "60000.00", cid="x")
    _, out = e.expire("a", "BTCUSDT", None, "x")
    assert [(u.exec_type, u.order.status) for u in out.updates] == [("EXPIRED", "EXPIRED")]
    assert e.balances("a")["USDT"].locked == D(0) and e.open_orders("a") == []
    with pytest.raises(EngineError, match="Unknown order"):
        e.expire("a", "BTCUSDT", order.order_id, None)
    # A public seller at 60000 no longer finds it.
    assert e.on_public_trade("BTCUSDT", D("59000.00"), D(1), "SELL").updates == ()
    # A lifetime: orders that rested that long expire, younger ones stay.
    place(e, "a", "BUY", "0.1", "59000.00", cid="old")
    e.set_time(4000)
    place(e, "a", "BUY", "0.1", "59000.00", cid="young")
    out = e.expire_older_than(3000)
    assert [u.order.client_order_id for u in out.updates] == ["old"]
    assert [o.client_order_id for o in e.open_orders("a")] == ["young"]
