"""Ladders: levels, spacing, sizes, spread bounds, price band, no-cross, and rounding to the
market's tick and lot exactly as ccxt rounds (checked against ccxt's own decimal_to_precision)."""

from __future__ import annotations

import ccxt
import pytest
from ccxt.base.decimal_to_precision import TRUNCATE, decimal_to_precision
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators import ladder as lad
from makerflow.operators.ladder import LadderShape, MarketSpec, build_ladder, from_ccxt_market

# The shape of a ccxt 4 Binance spot market (precisionMode TICK_SIZE): precision holds steps.
BINANCE_BTCUSDT = {
    "id": "BTCUSDT",
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "spot": True,
    "precision": {"amount": 1e-05, "price": 0.01, "cost": None, "base": 1e-08, "quote": 1e-08},
    "limits": {
        "leverage": {"min": None, "max": None},
        "amount": {"min": 1e-05, "max": 9000.0},
        "price": {"min": 0.01, "max": 1000000.0},
        "cost": {"min": 5.0, "max": 9000000.0},
    },
}
# The same market as an exchange in DECIMAL_PLACES mode describes it: numbers of decimals.
DECIMAL_BTCUSDT = {
    **BINANCE_BTCUSDT,
    "precision": {"amount": 5, "price": 2},
}


def test_ccxt_constants_are_the_ones_the_pure_module_repeats() -> None:
    assert (lad.TICK_SIZE, lad.DECIMAL_PLACES, lad.SIGNIFICANT_DIGITS) == (
        ccxt.TICK_SIZE,
        ccxt.DECIMAL_PLACES,
        ccxt.SIGNIFICANT_DIGITS,
    )
    assert ccxt.binance().precisionMode == ccxt.TICK_SIZE


def test_market_spec_from_ccxt_tick_size_mode() -> None:
    spec = from_ccxt_market(BINANCE_BTCUSDT, ccxt.TICK_SIZE)
    assert spec == MarketSpec(tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)


def test_market_spec_from_ccxt_decimal_places_mode() -> None:
    spec = from_ccxt_market(DECIMAL_BTCUSDT, ccxt.DECIMAL_PLACES)
    assert spec == MarketSpec(tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)
    # read in the wrong mode, 2 decimal places would be a tick of 2.0: the mode matters
    assert from_ccxt_market(DECIMAL_BTCUSDT, ccxt.TICK_SIZE).tick_size == 2.0


def test_market_spec_tick_of_half_a_unit_and_missing_limits() -> None:
    m = {"precision": {"price": 0.5, "amount": 1.0}, "limits": {"amount": {"min": None}}}
    spec = from_ccxt_market(m)
    assert spec == MarketSpec(tick_size=0.5, lot_size=1.0)
    assert spec.price_down(101.74) == 101.5 and spec.price_up(101.26) == 101.5


def test_significant_digits_and_missing_precision_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="SIGNIFICANT_DIGITS"):
        from_ccxt_market({"precision": {"price": 5, "amount": 8}}, ccxt.SIGNIFICANT_DIGITS)
    with pytest.raises(ValueError, match=r"precision\.price"):
        from_ccxt_market({"precision": {"amount": 1e-5}})


def test_rounding_goes_away_from_the_touch_and_survives_float_noise() -> None:
    spec = MarketSpec(tick_size=0.01, lot_size=0.001)
    assert spec.price_down(0.1 + 0.2) == 0.3  # 0.30000000000000004
    assert spec.price_down(61831.919999) == 61831.91
    assert spec.price_up(61831.910001) == 61831.92
    assert spec.price_up(61831.91) == 61831.91  # already on the grid: unchanged
    assert spec.qty_down(0.123456) == 0.123
    # 0.7 * 3 is 2.0999999999999996, which ccxt (working on the printed decimal) truncates
    # to 2.099 as well
    assert spec.qty_down(0.7 * 3) == 2.099
    assert decimal_to_precision(0.7 * 3, TRUNCATE, 0.001, ccxt.TICK_SIZE) == "2.099"


_prices = st.decimals(min_value="0.01", max_value="200000", places=6).map(float)


@settings(max_examples=300, deadline=None)
@given(price=_prices, qty=st.decimals(min_value="0", max_value="50", places=9).map(float))
def test_truncation_agrees_with_ccxt_in_tick_size_mode(price: float, qty: float) -> None:
    spec = from_ccxt_market(BINANCE_BTCUSDT, ccxt.TICK_SIZE)
    assert spec.price_down(price) == float(
        decimal_to_precision(price, TRUNCATE, 0.01, ccxt.TICK_SIZE)
    )
    assert spec.qty_down(qty) == float(decimal_to_precision(qty, TRUNCATE, 1e-05, ccxt.TICK_SIZE))


@settings(max_examples=300, deadline=None)
@given(price=_prices, qty=st.decimals(min_value="0", max_value="50", places=9).map(float))
def test_truncation_agrees_with_ccxt_in_decimal_places_mode(price: float, qty: float) -> None:
    spec = from_ccxt_market(DECIMAL_BTCUSDT, ccxt.DECIMAL_PLACES)
    assert spec.price_down(price) == float(
        decimal_to_precision(price, TRUNCATE, 2, ccxt.DECIMAL_PLACES)
    )
    assert spec.qty_down(qty) == float(decimal_to_precision(qty, TRUNCATE, 5, ccxt.DECIMAL_PLACES))


@settings(max_examples=200, deadline=None)
@given(price=_prices)
def test_round_up_is_the_next_tick_at_or_above(price: float) -> None:
    spec = MarketSpec(tick_size=0.01, lot_size=1.0)
    up = spec.price_up(price)
    assert up >= price
    assert spec.price_down(up) == up  # on the grid
    assert round(up - 0.01, 2) < price


SPEC = MarketSpec(tick_size=0.01, lot_size=0.001, min_qty=0.001, min_notional=1.0)


def test_levels_spacing_and_sizes_hand_computed() -> None:
    shape = LadderShape(levels=3, level_spacing_bps=10.0, order_size=0.1, size_multiplier=2.0)
    lad_ = build_ladder(
        reservation=100.0, half_spread=0.123, reference=100.0, spec=SPEC, shape=shape
    )
    # bids: 100 - 0.123 - i * 0.1 rounded down; asks: 100 + 0.123 + i * 0.1 rounded up
    assert [(lv.level, lv.price, lv.qty) for lv in lad_.bids] == [
        (0, 99.87, 0.1),
        (1, 99.77, 0.2),
        (2, 99.67, 0.4),
    ]
    assert [(lv.level, lv.price, lv.qty) for lv in lad_.asks] == [
        (0, 100.13, 0.1),
        (1, 100.23, 0.2),
        (2, 100.33, 0.4),
    ]


def test_explicit_sizes_are_rounded_down_to_the_lot() -> None:
    shape = LadderShape(levels=2, sizes=(0.12345, 0.5))
    lad_ = build_ladder(reservation=100.0, half_spread=0.5, reference=100.0, spec=SPEC, shape=shape)
    assert [lv.qty for lv in lad_.bids] == [0.123, 0.5]


def test_min_and_max_spread_bound_the_half_spread() -> None:
    shape = LadderShape(min_spread_bps=20.0, max_spread_bps=50.0, order_size=0.1)
    narrow = build_ladder(
        reservation=100.0, half_spread=0.001, reference=100.0, spec=SPEC, shape=shape
    )
    # 20 bps of 100 = 0.2 total -> 0.1 a side
    assert (narrow.bids[0].price, narrow.asks[0].price, narrow.half_spread) == (99.9, 100.1, 0.1)
    wide = build_ladder(reservation=100.0, half_spread=3.0, reference=100.0, spec=SPEC, shape=shape)
    # 50 bps of 100 = 0.5 total -> 0.25 a side
    assert (wide.bids[0].price, wide.asks[0].price, wide.half_spread) == (99.75, 100.25, 0.25)


def test_price_band_leaves_out_levels_too_far_from_the_reference() -> None:
    shape = LadderShape(levels=3, level_spacing_bps=10.0, order_size=0.1, price_band_bps=50.0)
    # band: [99.5, 100.5]; reservation 100.4: asks at 100.45 (in), 100.55 and 100.65 (out)
    lad_ = build_ladder(
        reservation=100.4, half_spread=0.05, reference=100.0, spec=SPEC, shape=shape
    )
    assert [(lv.level, lv.price) for lv in lad_.asks] == [(0, 100.45)]
    assert [lv.price for lv in lad_.bids] == [100.35, 100.25, 100.15]


def test_quotes_never_cross_the_book_and_stay_one_tick_apart() -> None:
    shape = LadderShape(levels=3, level_spacing_bps=0.1, order_size=0.1)
    lad_ = build_ladder(
        reservation=100.1,
        half_spread=0.02,
        reference=100.0,
        spec=SPEC,
        shape=shape,
        best_bid=100.0,
        best_ask=100.02,
    )
    # the model wants a bid at 100.08, above the best ask: post-only would be rejected
    assert [lv.price for lv in lad_.bids] == [100.01, 100.0, 99.99]
    assert all(a.price > 100.0 for a in lad_.asks)
    assert [lv.price for lv in lad_.asks] == [100.12, 100.13, 100.14]


def test_too_small_orders_are_left_out() -> None:
    tiny = LadderShape(levels=2, order_size=0.004, size_multiplier=3.0)
    lad_ = build_ladder(reservation=100.0, half_spread=0.1, reference=100.0, spec=SPEC, shape=tiny)
    # level 0: 0.004 * 99.9 = 0.4 < min notional 1.0 -> out; level 1: 0.012 * 99.89 = 1.2 -> in
    assert [(lv.level, lv.qty) for lv in lad_.bids] == [(1, 0.012)]
    below_lot = LadderShape(order_size=0.0004)
    assert (
        build_ladder(
            reservation=100.0, half_spread=0.1, reference=100.0, spec=SPEC, shape=below_lot
        ).bids
        == ()
    )


def test_one_sided_ladders() -> None:
    shape = LadderShape(order_size=0.1)
    lad_ = build_ladder(
        reservation=100.0,
        half_spread=0.1,
        reference=100.0,
        spec=SPEC,
        shape=shape,
        quote_bids=False,
    )
    assert lad_.bids == () and len(lad_.asks) == 1
