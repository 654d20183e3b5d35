"""The demo's final views (pure): the pipeline's state from its own streams, and the
exchange's records."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from makerflow.demo.ground_truth import (
    compare_with_venue,
    exchange_order_record,
    exchange_trade_record,
    pipeline_view,
)
from makerflow.exchange.engine import MarketSpec, MatchingEngine
from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent, OrderIntent

SPEC = MarketSpec(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    min_notional=D(5),
)
COMMON = {"venue": "binance", "symbol": "BTC/USDT"}


def intent(cid, side="buy", price=60000.0, ts=1):
    return OrderIntent(
        ts=ts, action="place", client_order_id=cid, side=side, price=price, qty=0.01, **COMMON
    )


def event(cid, status, filled=0.0, side="buy", price=60000.0, ts=2):
    return OrderEvent(
        ts=ts,
        client_order_id=cid,
        status=status,
        side=side,
        price=price,
        qty=0.01,
        filled_qty=filled,
        **COMMON,
    )


def fill(tid, cid, side, qty, price, fee, fee_asset, ts=3):
    return Fill(
        ts=ts,
        trade_id=tid,
        client_order_id=cid,
        side=side,
        qty=qty,
        price=price,
        fee=fee,
        fee_asset=fee_asset,
        **COMMON,
    )


def balances():
    return [
        BalanceSnapshot(ts=0, venue="binance", asset="BTC", free=2.0, total=2.0),
        BalanceSnapshot(ts=0, venue="binance", asset="USDT", free=1000.0, total=1000.0),
        BalanceSnapshot(ts=9, venue="binance", asset="BTC", free=5.0, total=5.0),  # later
    ]


def test_pipeline_view_counts_each_fill_once_net_of_fees_whatever_the_order():
    intents = [intent("mf-a"), intent("mf-b", side="sell", price=61000.0), intent("mf-c")]
    events = [
        event("mf-a", "filled", 0.01),
        event("mf-a", "ack"),  # reordered: the ack after the fill
        event("mf-b", "ack", side="sell", price=61000.0),
        event("mf-b", "partial", 0.004, side="sell", price=61000.0),
        event("mf-c", "ack"),
        event("mf-c", "canceled"),
    ]
    buy = fill("1", "mf-a", "buy", 0.01, 60000.0, 0.00001, "BTC")
    sell = fill("2", "mf-b", "sell", 0.004, 61000.0, 0.244, "USDT")
    view = pipeline_view(intents, [], events, [sell, buy, buy, sell], balances())
    assert set(view["open_orders"]) == {"mf-b"}
    assert view["open_orders"]["mf-b"]["filled"] == pytest.approx(0.004)
    assert view["open_orders"]["mf-b"]["state"] == "partially_filled"
    assert view["fills_applied"] == 2 and view["fills_duplicated"] == 2
    assert view["inventory_change"]["BTC"] == pytest.approx(0.01 - 0.00001 - 0.004)
    assert view["inventory_change"]["USDT"] == pytest.approx(-600.0 + 244.0 - 0.244)
    assert view["inventory_start"] == {"BTC": 2.0, "USDT": 1000.0}
    assert view["inventory"]["BTC"] == pytest.approx(2.0 + 0.01 - 0.00001 - 0.004)
    assert view["position"] == {"binance:BTC/USDT": pytest.approx(0.006)}
    # The same streams in another order: the same view.
    again = pipeline_view(intents[::-1], [], events[::-1], [buy, sell], balances()[::-1])
    assert again | {"fills_duplicated": 2} == view


def test_exchange_records_say_what_the_venue_did():
    e = MatchingEngine([SPEC], start_time_ms=5)
    e.add_account("main", {"USDT": D(100_000), "BTC": D(1)})
    e.add_account("other", {"USDT": D(100_000), "BTC": D(1)})
    order, _ = e.place(
        "main", "BTCUSDT", "BUY", "LIMIT", D("0.5"), D("60000.00"), client_order_id="x"
    )
    e.set_time(9)
    e.place("other", "BTCUSDT", "SELL", "LIMIT", D("0.2"), D("60000.00"), client_order_id="y")
    rec = exchange_order_record(e.get_order("main", "BTCUSDT", None, "x"), SPEC)
    assert rec == {
        "client_order_id": "x",
        "exchange_order_id": str(order.order_id),
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "price": 60000.0,
        "qty": 0.5,
        "status": "partially_filled",
        "filled_qty": 0.2,
        "created_ms": 5,
        "updated_ms": 9,
    }
    (trade,) = e.my_trades("main", "BTCUSDT")
    t = exchange_trade_record(trade, SPEC)
    assert (t["client_order_id"], t["side"], t["qty"], t["fee_asset"], t["liquidity"]) == (
        "x",
        "buy",
        0.2,
        "BTC",
        "maker",
    )
    assert t["fee"] == pytest.approx(0.0002)


def test_compare_with_venue_names_every_disagreement():
    truth = {
        "orders": [
            {"client_order_id": "a", "status": "canceled"},
            {"client_order_id": "a", "status": "new"},
            {"client_order_id": "b", "status": "filled"},
        ],
        "trades": [{"trade_id": "1"}, {"trade_id": "2"}],
        "balances": {"start": {"BTC": 1.0, "USDT": 10.0}, "end": {"BTC": 1.5, "USDT": 10.0}},
    }
    view = {"open_orders": {"c": {}}, "inventory_change": {"BTC": 0.5, "USDT": -1.0}}
    got = compare_with_venue(truth, view, ["1", "1", "3"])
    assert got == {
        "client_ids_placed_twice": ["a"],
        "trades_missing_from_fills": ["2"],
        "fills_not_on_venue": ["3"],
        "fills_delivered_twice": ["1"],
        "open_on_venue_only": ["a"],
        "open_in_pipeline_only": ["c"],
        "inventory_off": {"USDT": {"pipeline": -1.0, "venue": 0.0}},
    }
    agreed = {"open_orders": {"a": {}}, "inventory_change": {"BTC": 0.5}}
    truth["orders"] = truth["orders"][1:]
    assert not any(compare_with_venue(truth, agreed, ["1", "2"]).values())
