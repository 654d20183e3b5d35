"""Invariants of the matching engine under random order flow (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.exchange.engine import EngineError, MarketSpec, MatchingEngine

SPEC = MarketSpec(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.5"),
    step_size=D("0.1"),
    min_qty=D("0.1"),
    min_notional=D(1),
    maker_fee=D("0.001"),
    taker_fee=D("0.002"),
)
ACCOUNTS = ("a", "b", "c")

place = st.tuples(
    st.just("place"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "LIMIT", "LIMIT_MAKER", "MARKET"]),
    st.integers(1, 30),
    st.integers(180, 220),
)
cancel = st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(1, 60))
top = st.tuples(st.just("top"), st.integers(180, 220), st.integers(1, 4), st.integers(0, 20))
trade = st.tuples(
    st.just("trade"), st.integers(180, 220), st.integers(1, 20), st.sampled_from(["BUY", "SELL"])
)


def run(ops):
    e = MatchingEngine([SPEC])
    published = ({}, {})
    for acct in ACCOUNTS:
        e.add_account(acct, {"USDT": D(2000), "BTC": D(10)})
    for i, op in enumerate(ops):
        e.set_time(i)
        try:
            if op[0] == "place":
                _, acct, side, otype, lots, ticks = op
                e.place(
                    acct,
                    "BTCUSDT",
                    side,
                    otype,
                    lots * SPEC.step_size,
                    None if otype == "MARKET" else ticks * SPEC.tick_size,
                    client_order_id=f"o{i}",
                )
            elif op[0] == "cancel":
                e.cancel(op[1], "BTCUSDT", op[2], None)
            elif op[0] == "top":
                _, bid, spread, lots = op
                e.on_book_top(
                    "BTCUSDT",
                    bid * SPEC.tick_size,
                    lots * SPEC.step_size,
                    (bid + spread) * SPEC.tick_size,
                    lots * SPEC.step_size,
                )
            else:
                _, px, lots, side = op
                e.on_public_trade("BTCUSDT", px * SPEC.tick_size, lots * SPEC.step_size, side)
        except EngineError:
            pass
        check(e)
        # A publisher that re-reads only the touched levels keeps an exact copy of the book.
        for price in e.drain_touched("BTCUSDT"):
            for side, qty in enumerate(e.level("BTCUSDT", price)):
                if qty:
                    published[side][price] = qty
                else:
                    published[side].pop(price, None)
        _, bids, asks = e.depth("BTCUSDT", 10_000)
        assert (dict(bids), dict(asks)) == published
        bid, ask = e.top("BTCUSDT")
        assert bid == (bids[0] if bids else None) and ask == (asks[0] if asks else None)
    return e


def check(e):
    holds = defaultdict(D)
    for acct in ACCOUNTS:
        for o in e.open_orders(acct):
            assert o.is_open and o.remaining > 0
            holds[(acct, SPEC.quote if o.side == "BUY" else SPEC.base)] += o.hold
        for asset, bal in e.balances(acct).items():
            assert bal.free >= 0 and bal.locked >= 0, (acct, asset, bal)
            assert bal.locked == holds[(acct, asset)], (acct, asset, bal, holds)
    bids = [o.price for a in ACCOUNTS for o in e.open_orders(a) if o.side == "BUY"]
    asks = [o.price for a in ACCOUNTS for o in e.open_orders(a) if o.side == "SELL"]
    if bids and asks:
        assert max(bids) < min(asks), "resting orders never cross"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(place, cancel, top, trade), max_size=60))
def test_holds_balances_and_book_stay_consistent(ops):
    run(ops)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(place, cancel), max_size=60))
def test_without_the_public_market_assets_are_conserved_minus_fees(ops):
    e = run(ops)
    fees = defaultdict(D)
    for acct in ACCOUNTS:
        for t in e.my_trades(acct, "BTCUSDT"):
            fees[t.commission_asset] += t.commission
    for asset, start in (("USDT", D(2000)), ("BTC", D(10))):
        total = sum(
            (b.free + b.locked for a in ACCOUNTS for k, b in e.balances(a).items() if k == asset),
            D(0),
        )
        assert total + fees[asset] == start * len(ACCOUNTS)


reuse_place = st.tuples(
    st.just("place"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["c0", "c1", "c2"]),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 5),
    st.integers(190, 210),
)
reuse_close = st.tuples(
    st.sampled_from(["cancel", "expire"]), st.sampled_from(ACCOUNTS), st.sampled_from(["c0", "c1"])
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(reuse_place, reuse_close, trade), max_size=60))
def test_a_client_id_is_unique_among_open_orders_only(ops):
    """Binance's rule under any flow: a place whose client id belongs to an open order of the
    account is refused as a duplicate and changes nothing; once every order with the id is
    closed the id is accepted again; a look-up by client id finds the newest order."""
    e = MatchingEngine([SPEC])
    for acct in ACCOUNTS:
        e.add_account(acct, {"USDT": D(100_000), "BTC": D(100)})
    newest: dict[tuple[str, str], int] = {}
    for i, op in enumerate(ops):
        e.set_time(i)
        if op[0] == "place":
            _, acct, cid, side, lots, ticks = op
            was_open = any(o.client_order_id == cid for o in e.open_orders(acct))
            before = (len(e.all_orders(acct, "BTCUSDT")), e.balances(acct))
            try:
                order, _ = e.place(
                    acct,
                    "BTCUSDT",
                    side,
                    "LIMIT",
                    lots * SPEC.step_size,
                    ticks * SPEC.tick_size,
                    client_order_id=cid,
                )
                assert not was_open, "a duplicate of an open order was accepted"
                newest[(acct, cid)] = order.order_id
            except EngineError as exc:
                assert exc.message == "Duplicate order sent." and exc.code == -2010
                assert was_open
                after = (len(e.all_orders(acct, "BTCUSDT")), e.balances(acct))
                assert after == before
        elif op[0] in ("cancel", "expire"):
            _, acct, cid = op
            close = e.cancel if op[0] == "cancel" else e.expire
            try:
                close(acct, "BTCUSDT", None, cid)
            except EngineError as exc:
                assert exc.code in (-2011, -2013)
        else:
            _, px, lots, side = op
            e.on_public_trade("BTCUSDT", px * SPEC.tick_size, lots * SPEC.step_size, side)
        for acct in ACCOUNTS:
            cids = [o.client_order_id for o in e.open_orders(acct)]
            assert len(cids) == len(set(cids))
        for (acct, cid), oid in newest.items():
            assert e.get_order(acct, "BTCUSDT", None, cid).order_id == oid
