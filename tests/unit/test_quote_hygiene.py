"""The rules against stale quotes, and the inventory-skewed sizes, alone."""

from __future__ import annotations

import math

import pytest

from makerflow.operators.ladder import MarketSpec, inventory_sizes
from makerflow.operators.quote_hygiene import Hygiene
from makerflow.operators.quoting_config import QuotingParams

NS = 1_000_000_000
SPEC = MarketSpec(tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)


def rules(**changes: object) -> Hygiene:
    params = QuotingParams().replace(dict(changes))
    return Hygiene.of(
        params, half_spread=2.0, reference=60_000.0, mid=60_000.0, tick_size=0.01, lot_size=1e-5
    )


def test_tolerance_is_a_fraction_of_the_half_spread_capped_in_bps() -> None:
    assert rules().tolerance == pytest.approx(0.5)  # 0.25 of 2.0
    assert rules(refresh_tolerance_bps=0.05).tolerance == pytest.approx(0.3)  # 0.05 bps
    assert rules(refresh_fraction=1.0).tolerance == pytest.approx(2.0)


def test_close_orders_stay_until_the_age_ceiling() -> None:
    r = rules(max_quote_age_s=30.0)
    assert r.keeps("buy", 59_997.6, 0.001, 0, 59_998.0, 0.001, 29 * NS)
    assert not r.keeps("buy", 59_997.6, 0.001, 0, 59_998.0, 0.001, 30 * NS)
    assert rules(max_quote_age_s=0.0).keeps("buy", 59_998.0, 0.001, 0, 59_998.0, 0.001, 10**15)
    assert not r.keeps("buy", 59_998.0, 0.002, 0, 59_998.0, 0.001, NS // 10 + 2 * NS)  # size


def test_a_young_order_waits_unless_the_market_ran_into_it() -> None:
    r = rules(min_quote_lifetime_s=1.0)
    young = NS // 2
    # left behind (too passive by 1.5): waits
    assert r.keeps("buy", 59_996.5, 0.001, 0, 59_998.0, 0.001, young)
    assert r.keeps("sell", 60_003.5, 0.001, 0, 60_002.0, 0.001, young)
    # too aggressive by more than the half spread: replaced at once
    assert not r.keeps("buy", 60_000.5 - 0.6, 0.001, 0, 59_997.8, 0.001, young)
    # on the wrong side of the mid: replaced at once
    assert not r.keeps("buy", 60_000.0, 0.001, 0, 59_998.9, 0.001, young)
    assert not r.keeps("sell", 59_999.99, 0.001, 0, 60_001.0, 0.001, young)
    # old and off its price: replaced
    assert not r.keeps("buy", 59_996.5, 0.001, 0, 59_998.0, 0.001, NS)


def test_sizes_shrink_on_the_adding_side_and_never_pass_the_limit() -> None:
    qtys = (0.001, 0.001, 0.001)
    assert inventory_sizes(SPEC, qtys, 0.0, 0.01, 0.5) == (None, None)
    bids, asks = inventory_sizes(SPEC, qtys, 0.004, 0.01, 0.5)
    assert bids == (0.0008, 0.0008, 0.0008) and asks == qtys  # 1 - 0.5 * 0.4
    bids, asks = inventory_sizes(SPEC, qtys, -0.0095, 0.01, 0.5)
    assert asks == (0.0005, 0.0, 0.0) and bids == qtys  # only 0.0005 of room left
    bids, _ = inventory_sizes(SPEC, qtys, 0.01, 0.01, 0.5)
    assert bids == (0.0, 0.0, 0.0)
    # the whole ladder fits within the limit even when flat
    bids, asks = inventory_sizes(SPEC, qtys, 0.0, 0.0025, 0.0)
    assert bids == asks == (0.001, 0.001, 0.0005)
    assert inventory_sizes(SPEC, qtys, 0.5, math.inf, 0.5) == (qtys, qtys)
