"""The pure Quoter: what it places and cancels as ticks, fills, order events, risk states and
control commands arrive."""

from __future__ import annotations

import pickle
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.quoter import Quoter
from makerflow.operators.quoter_ids import client_order_id
from makerflow.operators.quoter_types import QuoterInputError, QuoterOutput
from makerflow.operators.quoting_config import MarketConfig, QuotingParams
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    ControlCommand,
    Fill,
    IndexPrice,
    OrderEvent,
    OrderIntent,
    RiskState,
)
from tests.quoting_support import btc_market, load_ticks, make_tick

NS = 1_000_000_000
T0 = 1_723_161_600 * NS  # a round minute, so finite-horizon sessions are easy to reason about

MARKET = MarketConfig(
    venue="binance",
    symbol="ETH/USDT",
    tick_size=0.01,
    lot_size=0.001,
    min_qty=0.001,
    min_notional=1.0,
    index_basket="ETH",
)
# sigma stays at sigma_initial (half-life of 30 years) so prices can be worked out by hand.
# Avellaneda-Stoikov, inventory in base units, orders of Delta = 0.1:
# Delta gamma sigma^2 tau = 0.1 * 1.0 * 0.25 * 10 = 0.25;
# (2/(gamma Delta)) ln(1 + gamma Delta/kappa) = 20 ln(16/15) = 1.2907704; total spread
# 1.5407704, half spread 0.7703852.
PARAMS = QuotingParams(
    model="avellaneda_stoikov",
    gamma=1.0,
    kappa=1.5,
    horizon_s=10.0,
    sigma_initial=0.5,
    sigma_half_life_s=1e9,
    warmup_s=0.0,
    order_size=0.1,
    max_spread_bps=500.0,
    price_band_bps=500.0,
    refresh_tolerance_bps=5.0,
    min_quote_lifetime_s=0.0,
)
HALF = 0.7703852


def tick(t: float, bid: float = 99.99, ask: float = 100.01):
    return make_tick(T0 + round(t * NS), bid, ask, venue="binance", symbol="ETH/USDT")


def places(out: QuoterOutput) -> list[OrderIntent]:
    return [i for i in out.intents if i.action == "place"]


def cancels(out: QuoterOutput) -> list[OrderIntent]:
    return [i for i in out.intents if i.action == "cancel"]


def fill(t: float, side: str, qty: float, price: float, cid: str | None = None, tid: str = "1"):
    return Fill(
        ts=T0 + round(t * NS),
        venue="binance",
        symbol="ETH/USDT",
        trade_id=tid,
        client_order_id=cid,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
    )


def order_event(t: float, intent: OrderIntent, status: str, filled: float = 0.0) -> OrderEvent:
    assert intent.client_order_id and intent.side and intent.qty
    return OrderEvent(
        ts=T0 + round(t * NS),
        venue=intent.venue,
        symbol=intent.symbol,
        client_order_id=intent.client_order_id,
        exchange_order_id="x" + intent.client_order_id[-4:],
        status=status,  # type: ignore[arg-type]
        side=intent.side,
        price=intent.price,
        qty=intent.qty,
        filled_qty=filled,
    )


def risk(t: float, scope: str, status: str) -> RiskState:
    return RiskState(ts=T0 + round(t * NS), scope=scope, status=status)  # type: ignore[arg-type]


def control(t: float, command: str, scope: str = "global", **params: Any) -> ControlCommand:
    return ControlCommand(
        ts=T0 + round(t * NS),
        command=command,  # type: ignore[arg-type]
        scope=scope,
        params=params,
        issued_by="test",
    )


def prices(out: QuoterOutput) -> dict[str, float]:
    return {f"{i.side}": i.price for i in places(out) if i.price is not None}


def test_first_tick_clears_old_orders_then_places_the_hand_computed_quotes() -> None:
    q = Quoter(MARKET, PARAMS)
    out = q.on_tick(tick(0))
    assert out.intents[0].action == "cancel_all"
    # r = 100 (flat); bid 100 - 0.7703852 = 99.2296 -> 99.22, ask 100.7703852 -> 100.78
    assert prices(out) == {"buy": 99.22, "sell": 100.78}
    assert all(i.qty == 0.1 and i.post_only and i.reference == 100.0 for i in places(out))
    assert out.ladder is not None and out.ladder.half_spread == pytest.approx(HALF, abs=1e-7)


def test_long_inventory_skews_both_quotes_down_and_short_up() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    out = q.on_fill(fill(1, "buy", 0.2, 99.22, tid="a"))
    assert q.inventory == pytest.approx(0.2)
    # q = 0.2: r = 100 - 0.2 * 1.0 * 0.25 * 10 = 99.5
    # bid 99.5 - 0.7703852 = 98.7296 -> 98.72, ask 99.5 + 0.7703852 = 100.2704 -> 100.28
    assert prices(out) == {"buy": 98.72, "sell": 100.28}
    assert {i.client_order_id for i in cancels(out)} == {
        o for o in q.orders if q.orders[o].cancel_ts is not None
    }
    out = q.on_fill(fill(2, "sell", 0.4, 100.28, tid="b"))
    # q = -0.2: r = 100.5 -> bid 99.7296 -> 99.72, ask 101.2704 -> 101.28
    assert prices(out) == {"buy": 99.72, "sell": 101.28}


def test_duplicate_fills_count_once() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    q.on_fill(fill(1, "buy", 0.1, 99.22, tid="t1"))
    assert q.on_fill(fill(1, "buy", 0.1, 99.22, tid="t1")) == QuoterOutput()
    assert q.inventory == pytest.approx(0.1)


def test_refresh_tolerance_leaves_small_moves_alone() -> None:
    q = Quoter(MARKET, PARAMS)  # tolerance 5 bps of 100 = 0.05
    first = q.on_tick(tick(0))
    assert len(places(first)) == 2
    assert q.on_tick(tick(1, 100.02, 100.04)).intents == ()  # mid +0.03: inside
    moved = q.on_tick(tick(2, 100.07, 100.09))  # mid +0.08: outside
    assert [i.client_order_id for i in cancels(moved)] == [i.client_order_id for i in places(first)]
    assert prices(moved) == {"buy": 99.30, "sell": 100.86}


def test_minimum_quote_lifetime_holds_young_orders() -> None:
    q = Quoter(MARKET, PARAMS.replace({"min_quote_lifetime_s": 2.0}))
    q.on_tick(tick(0))
    assert q.on_tick(tick(1, 100.07, 100.09)).intents == ()  # moved, but only 1 s old
    later = q.on_tick(tick(2.5, 100.07, 100.09))
    assert len(cancels(later)) == 2 and len(places(later)) == 2


def test_refresh_tolerance_cuts_churn_on_recorded_ticks() -> None:
    ticks = load_ticks()
    market, eager = btc_market(refresh_fraction=1e-9, min_quote_lifetime_s=0.0, levels=2)
    calm = eager.replace({"refresh_fraction": 0.25, "min_quote_lifetime_s": 1.0})
    counts = {}
    for name, params in (("eager", eager), ("calm", calm)):
        q = Quoter(market, params)
        n = 0
        for t in ticks:
            out = q.on_tick(t)
            n += len(out.intents)
            for i in cancels(out):  # the venue confirms each cancel
                q.on_order_event(_confirmed(i, t.ts))
            # every order that still quotes is within the tolerance (a fraction of the half
            # spread) of where the model wants it, or young, on its side of the mid and not
            # more than a half spread more aggressive than its price
            desired = q.desired_ladder(t.ts)
            assert desired is not None
            ladder = desired[0]
            want = {("buy", lv.level): lv.price for lv in ladder.bids}
            want |= {("sell", lv.level): lv.price for lv in ladder.asks}
            tol = params.refresh_fraction * ladder.half_spread + 1e-6
            for o in q.orders.values():
                if o.cancel_ts is None:
                    target = want[(o.side, o.level)]
                    off = abs(o.price - target)
                    young = t.ts - o.placed_ts < params.min_quote_lifetime_s * NS
                    right_side = o.price < t.mid if o.side == "buy" else o.price > t.mid
                    aggressive = o.price - target if o.side == "buy" else target - o.price
                    assert off <= tol or (young and right_side and aggressive <= ladder.half_spread)
        counts[name] = n
    assert counts["calm"] * 5 < counts["eager"], counts


def _confirmed(cancel: OrderIntent, ts: int) -> OrderEvent:
    assert cancel.client_order_id and cancel.side and cancel.qty
    return OrderEvent(
        ts=ts,
        venue=cancel.venue,
        symbol=cancel.symbol,
        client_order_id=cancel.client_order_id,
        status="canceled",
        side=cancel.side,
        price=cancel.price,
        qty=cancel.qty,
    )


def test_same_input_gives_the_same_intents_byte_for_byte() -> None:
    ticks = load_ticks(1500)
    market, params = btc_market(levels=3)
    # No venue answers in this run: lift the bound on unresolved orders, or the quoter
    # (rightly) stops placing once nothing closes its orders.
    params = params.replace({"max_unresolved_orders": 100_000})

    def run() -> bytes:
        q = Quoter(market, params, id_namespace="paper")
        out: list[bytes] = []
        for i, t in enumerate(ticks):
            o = q.on_tick(t)
            out.extend(encode(x) for x in o.intents)
            if i % 250 == 249:  # a fill on the best bid now and then
                bid = next(x for x in q.orders.values() if x.side == "buy" and x.level == 0)
                f = Fill(
                    ts=t.ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    trade_id=str(i),
                    client_order_id=bid.client_order_id,
                    side="buy",
                    price=bid.price,
                    qty=bid.qty,
                )
                out.extend(encode(x) for x in q.on_fill(f).intents)
        return b"\n".join(out)

    a, b = run(), run()
    assert a == b and len(a) > 10_000
    ids = re.findall(rb'"client_order_id":"([^"]+)"', a)
    assert len(set(ids)) > 30
    # Binance newClientOrderId: ^[\.A-Z\:/a-z0-9_-]{1,36}$; we keep to 32 of [A-Za-z0-9_-]
    assert all(re.fullmatch(rb"mf-[0-9a-f]{10}-[bs]\d{1,2}-[0-9a-z]+", i) for i in ids)
    assert all(len(i) <= 32 for i in ids)


def test_ids_differ_between_namespaces_and_between_runs_started_at_other_times() -> None:
    def first_ids(q: Quoter, t: float) -> set[str | None]:
        return {i.client_order_id for i in places(q.on_tick(tick(t)))}

    a = first_ids(Quoter(MARKET, PARAMS, id_namespace="a"), 0)
    b = first_ids(Quoter(MARKET, PARAMS, id_namespace="b"), 0)
    later = first_ids(Quoter(MARKET, PARAMS, id_namespace="a"), 5)
    again = first_ids(Quoter(MARKET, PARAMS, id_namespace="a"), 0)
    assert a == again and not (a & b) and not (a & later)


def _quoting_with_acked_orders(levels: int = 3) -> tuple[Quoter, list[OrderIntent]]:
    q = Quoter(MARKET, PARAMS.replace({"levels": levels}))
    placed = places(q.on_tick(tick(0)))
    for p in placed:
        q.on_order_event(order_event(0.1, p, "ack"))
    return q, placed


def test_halt_cancels_every_open_order_within_one_event() -> None:
    q, placed = _quoting_with_acked_orders(levels=3)
    assert len(placed) == 6
    q.on_order_event(order_event(0.2, placed[0], "partial", filled=0.05))
    out = q.on_risk(risk(1, "asset:ETH", "HALTED"))
    assert out.intents[0].action == "cancel_all"
    assert out.intents[0].ts == T0 + NS
    assert sorted(str(i.client_order_id) for i in cancels(out)) == sorted(
        str(p.client_order_id) for p in placed
    )
    assert len(out.intents) == 7 and "halt" in out.intents[1].reason
    assert out.ladder is not None and out.ladder.bids == () and out.ladder.asks == ()
    # while halted, market moves place nothing
    assert places(q.on_tick(tick(2, 101.0, 101.02))) == []
    assert q.on_risk(risk(3, "asset:ETH", "HALTED")).intents == ()  # repeated state: nothing


def test_halt_of_a_scope_that_does_not_cover_the_market_changes_nothing() -> None:
    q, _ = _quoting_with_acked_orders()
    assert q.on_risk(risk(1, "asset:BTC", "HALTED")) == QuoterOutput()
    assert q.on_risk(risk(1, "market:okx:ETH/USDT", "HALTED")) == QuoterOutput()
    assert not q.halted


def test_resume_restores_quoting_once_every_halting_scope_is_active() -> None:
    q, placed = _quoting_with_acked_orders(levels=1)
    q.on_risk(risk(1, "global", "HALTED"))
    q.on_risk(risk(1.5, "market:binance:ETH/USDT", "HALTED"))
    for p in placed:  # the exchange confirms the cancels
        q.on_order_event(order_event(1.6, p, "canceled"))
    assert q.orders == {}
    assert q.on_risk(risk(2, "global", "ACTIVE")).intents == ()  # still halted by the market
    out = q.on_risk(risk(3, "market:binance:ETH/USDT", "ACTIVE"))
    assert prices(out) == {"buy": 99.22, "sell": 100.78}
    assert all(i.ts == T0 + 3 * NS for i in out.intents)
    assert not ({i.client_order_id for i in places(out)} & {p.client_order_id for p in placed})


def test_control_halt_and_resume() -> None:
    q, placed = _quoting_with_acked_orders(levels=1)
    out = q.on_control(control(1, "halt", "account:main"))
    assert out.intents[0].action == "cancel_all" and len(cancels(out)) == 2
    for p in placed:
        q.on_order_event(order_event(1.1, p, "canceled"))
    assert len(places(q.on_control(control(2, "resume", "account:main")))) == 2


def test_unconfirmed_cancels_are_sent_again() -> None:
    q, placed = _quoting_with_acked_orders(levels=1)
    q.on_risk(risk(1, "global", "HALTED"))
    assert cancels(q.on_tick(tick(2))) == []  # 1 s after: wait
    again = cancels(q.on_tick(tick(3.5)))  # cancel_retry_s = 2
    assert {i.client_order_id for i in again} == {p.client_order_id for p in placed}
    assert len(cancels(q.on_tick(tick(5.5)))) == 2  # second retry (max_cancel_retries = 2)
    # after that they are retried ever more slowly (4 s now), never forgotten: the venue
    # has not said they are gone (main dropped them here, after max_cancel_retries)
    assert cancels(q.on_tick(tick(7.5))) == []
    assert len(q.orders) == 2 and all(o.state == "pending_cancel" for o in q.orders.values())
    late = q.on_tick(tick(9.5))
    assert len(cancels(late)) == 2
    assert [a.name for a in late.alerts] == ["CancelNotConfirmed"] * 2


def test_set_params_changes_the_model() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    out = q.on_control(control(1, "set_params", "asset:ETH", gamma=4.0, kappa=1.0))
    # Delta gamma sigma^2 tau = 0.1 * 4 * 0.25 * 10 = 1.0; (2/0.4) ln(1 + 0.4/1) = 5 ln 1.4
    # = 1.6823612; half spread (1.0 + 1.6823612) / 2 = 1.3411806: bid 98.6588 -> 98.65,
    # ask 101.3412 -> 101.35
    assert q.params.gamma == 4.0 and q.params.kappa == 1.0
    assert prices(out) == {"buy": 98.65, "sell": 101.35}
    out = q.on_control(control(2, "set_params", model="fixed_spread", half_spread_bps=20.0))
    # 20 bps of 100 = 0.2: bid 99.80, ask 100.20
    assert prices(out) == {"buy": 99.8, "sell": 100.2}
    assert q.params.gamma == 4.0  # earlier changes stay


def test_bad_set_params_is_refused_and_changes_nothing() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    with pytest.raises(QuoterInputError, match="gamma"):
        q.on_control(control(1, "set_params", gamma=-1.0))
    with pytest.raises(QuoterInputError, match="gama"):
        q.on_control(control(1, "set_params", "global", **{"quoting.gama": 1.0}))
    with pytest.raises(QuoterInputError, match="gama"):  # a typo next to a good key
        q.on_control(control(1, "set_params", kappa=2.0, gama=1.0))
    assert q.params == PARAMS


def test_set_params_of_another_service_is_left_to_it() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    # the risk service's limits travel on the same control topic
    assert q.on_control(control(1, "set_params", max_move_bps=50.0)) == QuoterOutput()
    assert (
        q.on_control(control(1, "set_params", "global", **{"risk.max_move_bps": 5}))
        == QuoterOutput()
    )
    out = q.on_control(control(2, "set_params", "global", **{"quoting.gamma": 0.4, "risk.x": 1}))
    assert q.params.gamma == 0.4 and places(out)


def test_snapshot_resumes_exactly_where_it_left_off() -> None:
    ticks = load_ticks(1200)
    market, params = btc_market(levels=2)
    whole = Quoter(market, params)
    expected = [encode(i) for t in ticks for i in whole.on_tick(t).intents]
    first = Quoter(market, params)
    got = [encode(i) for t in ticks[:600] for i in first.on_tick(t).intents]
    resumed = Quoter(market, params, snapshot=pickle.loads(pickle.dumps(first.snapshot())))
    got += [encode(i) for t in ticks[600:] for i in resumed.on_tick(t).intents]
    assert got == expected


def test_rejected_slot_backs_off_and_filled_slot_is_replaced() -> None:
    q = Quoter(MARKET, PARAMS)
    bid, ask = places(q.on_tick(tick(0)))
    assert q.on_order_event(order_event(0.1, bid, "rejected")).intents == ()  # backoff 1 s
    assert places(q.on_tick(tick(0.5))) == []
    retry = places(q.on_tick(tick(1.2)))
    assert [i.side for i in retry] == ["buy"] and retry[0].client_order_id != bid.client_order_id
    q.on_order_event(order_event(1.3, ask, "ack"))
    out = q.on_order_event(order_event(1.4, ask, "filled", filled=ask.qty or 0))
    # The filled slot is quoted again at once; the short position the fill made (reported
    # by the order update before its fill) may re-price the bid too.
    assert [i.side for i in places(out)].count("sell") == 1


def test_position_limit_stops_the_side_that_would_grow_it() -> None:
    q = Quoter(MARKET, PARAMS.replace({"max_position": 0.15}))
    q.on_tick(tick(0))
    out = q.on_fill(fill(1, "buy", 0.2, 99.22, tid="p"))
    assert [i.side for i in places(out)] == ["sell"]
    assert not any(o.side == "buy" and o.cancel_ts is None for o in q.orders.values())


def test_no_quotes_during_warmup() -> None:
    q = Quoter(MARKET, PARAMS.replace({"warmup_s": 5.0}))
    assert places(q.on_tick(tick(0))) == []
    assert places(q.on_tick(tick(4))) == []
    assert len(places(q.on_tick(tick(5)))) == 2


def test_fresh_index_price_is_the_fair_price_when_asked() -> None:
    q = Quoter(MARKET, PARAMS.replace({"fair_price": "index"}))
    ix = IndexPrice(ts=T0, basket="ETH", quote="USD", price=101.0, constituents=())
    q.on_index(ix)
    # r = 101: bid 100.2296 -> 100.22 would cross the best ask 100.01 -> 100.00; ask 101.78
    assert prices(q.on_tick(tick(0))) == {"buy": 100.0, "sell": 101.78}
    # 10 s later the index is stale (index_max_age_s = 5): back to the mid
    later = q.on_tick(tick(10))
    assert prices(later) == {"buy": 99.22, "sell": 100.78}


def test_unusable_ticks_are_refused_and_late_ticks_ignored() -> None:
    q = Quoter(MARKET, PARAMS)
    with pytest.raises(QuoterInputError, match="unusable prices"):
        q.on_tick(tick(0, float("nan"), 100.01))
    q.on_tick(tick(1))
    assert q.on_tick(tick(0.5, 90.0, 90.02)) == QuoterOutput()
    assert q.last_tick is not None and q.last_tick.bid == 99.99


def test_client_order_ids_fit_binance_limits_even_deep_into_a_run() -> None:
    cid = client_order_id("0123456789", "sell", 49, 36**14 - 1)
    assert len(cid) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", cid)
    with pytest.raises(ValueError, match="longer than 32"):
        client_order_id("0123456789", "sell", 49, 36**14)


# --- order truth from the one order state (issue 10) ---------------------------------------


def _bid_ask(q: Quoter, t: float = 0) -> tuple[OrderIntent, OrderIntent]:
    bid, ask = places(q.on_tick(tick(t)))
    assert bid.side == "buy" and ask.side == "sell"
    return bid, ask


def test_partial_update_before_its_fill_counts_once_and_places_no_replacement() -> None:
    # Found on main: 0.01 of 0.02 reported by the order update, then the fill of that
    # 0.01: the quoter counted 0.02, dropped the order and placed a replacement while
    # the other 0.01 rested on the exchange untracked.
    flat = {"model": "fixed_spread", "half_spread_bps": 50.0, "skew_bps_per_unit": 0.0}
    flat |= {"size_skew": 0.0}
    q = Quoter(MARKET, PARAMS.replace({"order_size": 0.02, **flat}))  # fills move no price
    bid, _ = _bid_ask(q)
    q.on_order_event(order_event(0.1, bid, "ack"))
    q.on_order_event(order_event(0.2, bid, "partial", filled=0.01))
    out = q.on_fill(fill(0.3, "buy", 0.01, bid.price or 0, cid=bid.client_order_id, tid="p1"))
    assert places(out) == [] and cancels(out) == []
    assert q.inventory == pytest.approx(0.01)
    live = q.orders[str(bid.client_order_id)]
    assert live.filled == pytest.approx(0.01) and live.cancel_ts is None
    # and the rest of the order filling later frees the slot for a new bid
    out = q.on_fill(fill(0.4, "buy", 0.01, bid.price or 0, cid=bid.client_order_id, tid="p2"))
    assert [i.side for i in places(out)] == ["buy"]
    assert str(bid.client_order_id) not in q.orders


def test_an_order_whose_answer_was_lost_keeps_its_slot_until_the_venue_says() -> None:
    q = Quoter(MARKET, PARAMS)
    bid, ask = _bid_ask(q)
    q.on_order_event(order_event(0.1, ask, "ack"))
    out = q.on_order_event(order_event(0.1, bid, "unknown"))
    assert out.intents == ()
    moved = q.on_tick(tick(2, 100.07, 100.09))  # far enough to refresh both sides
    assert [i.side for i in places(moved)] == ["sell"]  # the bid's slot stays taken
    assert [i.client_order_id for i in cancels(moved)] == [ask.client_order_id]
    assert q.orders[str(bid.client_order_id)].state == "unknown"
    # the venue had it after all: from now on the slot is quoted as usual
    q.on_order_event(order_event(2.1, bid, "ack"))
    again = q.on_tick(tick(3, 100.07, 100.09))
    assert [i.client_order_id for i in cancels(again)] == [bid.client_order_id]
    assert [i.side for i in places(again)] == ["buy"]


def test_an_unknown_order_that_never_landed_frees_its_slot_when_the_venue_says_so() -> None:
    q = Quoter(MARKET, PARAMS)
    bid, _ = _bid_ask(q)
    q.on_order_event(order_event(0.1, bid, "unknown"))
    out = q.on_order_event(order_event(1.5, bid, "rejected"))  # the look-up found nothing
    assert out.intents == ()  # reject backoff (1 s)
    assert [i.side for i in places(q.on_tick(tick(3)))] == ["buy"]


def test_unconfirmed_cancels_stay_pending_and_are_retried_until_the_venue_answers() -> None:
    q, placed = _quoting_with_acked_orders(levels=1)
    q.on_risk(risk(1, "global", "HALTED"))
    ids = {p.client_order_id for p in placed}
    sent = 0
    for t in range(2, 120):
        sent += len(cancels(q.on_tick(tick(t))))
    # retried, more and more slowly, never forgotten
    assert 2 * 3 <= sent <= 2 * 12
    assert set(q.orders) == ids
    assert all(o.state == "pending_cancel" for o in q.orders.values())
    for p in placed:
        q.on_order_event(order_event(120.5, p, "canceled"))
    assert q.orders == {}
    assert cancels(q.on_tick(tick(130))) == []


def test_orphans_are_no_quotes_of_the_quoter_and_are_left_to_execution() -> None:
    """Orphans have one owner, execution (its sweep cancels or adopts them and alerts): the
    quoter neither cancels nor alerts, and never counts an orphan as one of its quotes."""
    q = Quoter(MARKET, PARAMS)
    _bid_ask(q)
    before = set(q.orders)
    stray = OrderEvent(
        ts=T0 + NS,
        venue="binance",
        symbol="ETH/USDT",
        client_order_id="mf-0123456789-b0-7",
        status="ack",
        side="buy",
        price=99.0,
        qty=0.1,
    )
    assert q.on_order_event(stray) == QuoterOutput()
    assert q.on_order_event(stray) == QuoterOutput()
    assert set(q.orders) == before and "mf-0123456789-b0-7" not in q.orders
    assert q.order_state.get("mf-0123456789-b0-7") is not None  # known, not quoted
    manual = msgspec.structs.replace(stray, client_order_id="by-hand-1")
    assert q.on_order_event(manual) == QuoterOutput()  # not ours: left alone


def test_fees_paid_in_the_base_asset_reduce_inventory() -> None:
    q = Quoter(MARKET, PARAMS)
    q.on_tick(tick(0))
    f = msgspec.structs.replace(fill(1, "buy", 1.0, 99.22, tid="f1"), fee=0.001, fee_asset="ETH")
    q.on_fill(f)
    assert q.inventory == pytest.approx(0.999)
    s = msgspec.structs.replace(fill(2, "sell", 0.5, 100.0, tid="f2"), fee=0.001, fee_asset="ETH")
    q.on_fill(s)
    assert q.inventory == pytest.approx(0.498)
    u = msgspec.structs.replace(fill(3, "buy", 0.5, 100.0, tid="f3"), fee=0.05, fee_asset="USDT")
    q.on_fill(u)
    assert q.inventory == pytest.approx(0.998)


def test_a_backfill_of_trades_from_before_the_run_moves_no_inventory() -> None:
    # Found on main: the private stream's start-up backfill of recent trades (older than the
    # run) was added to initial_inventory, which already holds them.
    market = msgspec.structs.replace(MARKET, initial_inventory=2.0)
    q = Quoter(market, PARAMS)
    old = [fill(-60 - i, "buy", 0.5, 99.0, cid=f"mf-old-b0-{i}", tid=f"old{i}") for i in range(3)]
    q.on_fill(old[0])  # may arrive before the first tick ...
    q.on_tick(tick(0))
    for f in old[1:]:  # ... or after it
        q.on_fill(f)
    assert q.inventory == pytest.approx(2.0)
    q.on_fill(fill(1, "buy", 0.5, 99.22, tid="new1"))
    assert q.inventory == pytest.approx(2.5)


def _venue_replay(ticks: list[Any], params: QuotingParams) -> list[Any]:
    """The quoter's run over ``ticks`` with a venue answering it (an ack per place, a
    confirmation per cancel, a fill of all that rests when the touch moves through an
    order): every tick and venue event, in the order the quoter took them."""
    market, _ = btc_market()
    q = Quoter(market, params, cancel_on_start=False)
    resting: dict[str, OrderIntent] = {}
    taken: list[Any] = []
    n = 0

    def answer(intents: tuple[OrderIntent, ...], ts: int) -> list[Any]:
        out: list[Any] = []
        for i in intents:
            cid = str(i.client_order_id)
            if i.action == "place":
                resting[cid] = i
                out.append(order_event_btc(ts, i, "ack"))
            elif i.action == "cancel" and cid in resting:
                out.append(order_event_btc(ts, resting.pop(cid), "canceled"))
        return out

    for t in ticks:
        taken.append(t)
        pending = answer(q.on_tick(t).intents, t.ts)
        for cid, i in list(resting.items()):
            # the touch moved through our price: the resting order was taken
            if (t.bid < (i.price or 0)) if i.side == "buy" else (t.ask > (i.price or 0)):
                n += 1
                del resting[cid]
                f = Fill(
                    ts=t.ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    trade_id=str(n),
                    client_order_id=cid,
                    side=i.side or "buy",
                    price=i.price or 0.0,
                    qty=i.qty or 0.0,
                    fee=(i.qty or 0.0) * 0.001,
                    fee_asset="BTC",
                )
                pending += [f, order_event_btc(t.ts, i, "filled", filled=i.qty or 0.0)]
        while pending:
            ev = pending.pop(0)
            taken.append(ev)
            pending += answer(q.on_event(ev).intents, ev.ts)
    return taken


def order_event_btc(ts: int, i: OrderIntent, status: str, filled: float = 0.0) -> OrderEvent:
    return OrderEvent(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        client_order_id=str(i.client_order_id),
        status=status,  # type: ignore[arg-type]
        side=i.side or "buy",
        price=i.price,
        qty=i.qty or 0.0,
        filled_qty=filled,
    )


_REPLAY_PARAMS = btc_market(
    levels=2, model="fixed_spread", half_spread_bps=0.1, min_quote_lifetime_s=0.2
)[1]
_REPLAY = _venue_replay(load_ticks(800), _REPLAY_PARAMS)


def _run(events: list[Any]) -> tuple[list[bytes], float, dict[str, Any]]:
    market, _ = btc_market()
    q = Quoter(market, _REPLAY_PARAMS, cancel_on_start=False)
    intents = [encode(i) for ev in events for i in q.on_event(ev).intents]
    return intents, q.inventory, {o.client_order_id: o for o in q.order_state.open_orders()}


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_venue_events_delivered_again_change_no_intent_and_no_inventory(data: Any) -> None:
    venue = [i for i, ev in enumerate(_REPLAY) if isinstance(ev, OrderEvent | Fill)]
    assert len(venue) > 50 and any(isinstance(_REPLAY[i], Fill) for i in venue)
    picks = data.draw(st.lists(st.sampled_from(venue), min_size=1, max_size=20))
    delays = data.draw(st.lists(st.integers(0, 40), min_size=len(picks), max_size=len(picks)))
    redelivered = list(_REPLAY)
    # each repeat comes again later (a reconnect's backfill), after whatever came meanwhile
    for at, d in sorted(zip(picks, delays, strict=True), key=lambda x: -(x[0] + x[1])):
        redelivered.insert(min(at + 1 + d, len(redelivered)), _REPLAY[at])
    assert _run(redelivered) == _run(list(_REPLAY))


def test_a_rejected_order_stays_closed_whatever_a_failed_cancel_reports_after() -> None:
    # Seen in the chaos demo: a place refused (429), a refresh cancel already on its way,
    # the cancel failing too, and the sink reporting the order's "last known" state as an
    # ack; the order must stay closed, not come back as pending_cancel for ever.
    q = Quoter(MARKET, PARAMS)
    bid, _ = _bid_ask(q)
    refused = msgspec.structs.replace(order_event(0.1, bid, "rejected"), exchange_order_id=None)
    q.on_order_event(refused)
    last_known = msgspec.structs.replace(order_event(0.2, bid, "ack"), exchange_order_id=None)
    assert q.on_order_event(last_known).intents == ()
    assert str(bid.client_order_id) not in q.orders
    later = cancels(q.on_tick(tick(30)))
    assert bid.client_order_id not in {i.client_order_id for i in later}


def test_a_balance_reanchors_only_the_one_market_trading_its_asset() -> None:
    from makerflow.operators.quoting import MarketRouter
    from makerflow.operators.quoting_config import QuotingConfig
    from makerflow.schemas.events import BalanceSnapshot

    btc_usdt = MarketConfig(venue="binance", symbol="BTC/USDT", tick_size=0.01, lot_size=0.001)
    btc_usdc = MarketConfig(venue="binance", symbol="BTC/USDC", tick_size=0.01, lot_size=0.001)
    router = MarketRouter(QuotingConfig(markets=(MARKET, btc_usdt, btc_usdc)), "test")

    def bal(asset: str) -> BalanceSnapshot:
        return BalanceSnapshot(ts=T0, venue="binance", asset=asset, free=1.0, total=1.0)

    assert [k for k, _ in router.by_balance(bal("ETH"))] == ["binance:ETH/USDT"]
    # two markets share BTC: one balance cannot be split between their positions
    assert router.by_balance(bal("BTC")) == []
    assert router.by_balance(bal("USDT")) == []
