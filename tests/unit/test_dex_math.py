"""V2 / V3 / Chainlink price math on hand-computed values, both token orders, mixed decimals."""

from __future__ import annotations

import math

import pytest

from makerflow.operators import dex_math as dm

Q96 = 2**96

# USDC (6 dp) is token0 and WETH (18 dp) token1 in the mainnet USDC/WETH pools. At ETH = 2000
# USDC, one USDC is 1/2000 WETH: raw token1/token0 = 0.0005 * 10**(18 - 6) = 5e8, so
# sqrtPriceX96 = sqrt(5e8) * 2**96 = 22360.679... * 2**96.
USDC_WETH_AT_2000 = 1771595571142957102961017161607260
# WETH (18 dp) is token0 and USDT (6 dp) token1 in the mainnet WETH/USDT pools. At ETH = 2500
# USDT: raw = 2500 * 10**(6 - 18) = 2.5e-9, sqrt = 5e-5, so sqrtPriceX96 = 5e-5 * 2**96.
WETH_USDT_AT_2500 = 3961408125713216879677197
# WBTC (8 dp) token0, WETH (18 dp) token1; BTC = 20 ETH: raw = 20 * 10**(18 - 8) = 2e11.
WBTC_WETH_AT_20 = 35431911422859142059220343232145201


def test_v3_price_usdc_weth_base_is_token1() -> None:
    # ETH is token1 here, so the pool's token1/token0 price is inverted.
    assert dm.v3_price(USDC_WETH_AT_2000, 6, 18, base_is_token0=False) == pytest.approx(
        2000, rel=1e-12
    )
    # The same pool read the other way round: USDC priced in WETH.
    assert dm.v3_price(USDC_WETH_AT_2000, 6, 18, base_is_token0=True) == pytest.approx(
        0.0005, rel=1e-12
    )


def test_v3_price_weth_usdt_base_is_token0() -> None:
    assert dm.v3_price(WETH_USDT_AT_2500, 18, 6, base_is_token0=True) == pytest.approx(
        2500, rel=1e-12
    )


def test_v3_price_wbtc_weth() -> None:
    assert dm.v3_price(WBTC_WETH_AT_20, 8, 18, base_is_token0=True) == pytest.approx(20, rel=1e-12)
    assert dm.v3_price(WBTC_WETH_AT_20, 8, 18, base_is_token0=False) == pytest.approx(
        0.05, rel=1e-12
    )


def test_v3_price_at_q96_is_the_decimals_ratio() -> None:
    # sqrtPriceX96 = 2**96 means one raw unit for one raw unit; with 6 and 18 decimals one
    # whole token0 is 10**(6-18) whole token1.
    assert dm.v3_price(Q96, 6, 18, base_is_token0=True) == pytest.approx(1e-12, rel=1e-15)
    assert dm.v3_price(Q96, 18, 18, base_is_token0=True) == 1.0


@pytest.mark.parametrize("base_is_token0", [True, False])
@pytest.mark.parametrize(("d0", "d1"), [(6, 18), (18, 6), (8, 18), (18, 18)])
def test_sqrt_price_from_price_inverts_v3_price(base_is_token0: bool, d0: int, d1: int) -> None:
    for price in (0.0123, 1.0, 2000.0, 61234.5):
        s = dm.sqrt_price_x96_from_price(price, d0, d1, base_is_token0=base_is_token0)
        assert dm.v3_price(s, d0, d1, base_is_token0=base_is_token0) == pytest.approx(
            price, rel=1e-12
        )


def test_sqrt_price_of_2000_matches_the_hand_value() -> None:
    s = dm.sqrt_price_x96_from_price(2000.0, 6, 18, base_is_token0=False)
    assert s == USDC_WETH_AT_2000


def test_v3_price_rejects_values_a_pool_cannot_hold() -> None:
    with pytest.raises(ValueError, match="outside"):
        dm.v3_price(0, 6, 18, base_is_token0=True)
    with pytest.raises(ValueError, match="outside"):
        dm.v3_price(dm.MAX_SQRT_RATIO + 1, 6, 18, base_is_token0=True)


def test_tick_at_sqrt_price() -> None:
    assert dm.tick_at_sqrt_price(Q96) == 0
    # USDC/WETH at ETH=2000: log_1.0001(5e8) = 200311.4... -> tick 200311 (floor).
    assert dm.tick_at_sqrt_price(USDC_WETH_AT_2000) == 200311


def test_v2_price_both_orders() -> None:
    # 30,000,000 USDC (token0, 6 dp) against 10,000 WETH (token1, 18 dp): ETH = 3000 USDC.
    r_usdc, r_weth = 30_000_000 * 10**6, 10_000 * 10**18
    assert dm.v2_price(r_usdc, r_weth, 6, 18, base_is_token0=False) == pytest.approx(
        3000, rel=1e-12
    )
    # The same pool had WETH sorted first: reserves and decimals swap, the price does not.
    assert dm.v2_price(r_weth, r_usdc, 18, 6, base_is_token0=True) == pytest.approx(3000, rel=1e-12)
    assert dm.v2_quote_reserve(r_usdc, r_weth, 6, 18, base_is_token0=False) == 30_000_000


def test_v2_price_rejects_an_empty_pair() -> None:
    with pytest.raises(ValueError, match="positive"):
        dm.v2_price(0, 10, 6, 18, base_is_token0=True)


def test_v2_reserves_for_price_round_trip() -> None:
    r0, r1 = dm.v2_reserves_for_price(3000.0, 60e6, 6, 18, base_is_token0=False)
    assert r0 == 30_000_000 * 10**6
    assert r1 == 10_000 * 10**18
    assert dm.v2_price(r0, r1, 6, 18, base_is_token0=False) == pytest.approx(3000.0)


def test_v3_virtual_quote_reserve() -> None:
    # L = 1e18 at raw price 1 (sqrtP = 2**96): x = y = L raw units.
    assert dm.v3_virtual_reserves(10**18, Q96) == (1e18, 1e18)
    assert dm.v3_quote_reserve(10**18, Q96, 18, 18, base_is_token0=True) == pytest.approx(1.0)
    # WETH/USDT at 2500 with L = 1e15: y = L * 5e-5 = 5e10 raw USDT = 50,000 USDT.
    y = dm.v3_quote_reserve(10**15, WETH_USDT_AT_2500, 18, 6, base_is_token0=True)
    assert y == pytest.approx(50_000, rel=1e-9)


def test_depth_to_move() -> None:
    # Lifting x*y=k by 1% takes y * (sqrt(1.01) - 1) = 0.498756...% of the quote reserve.
    assert dm.depth_to_move(1_000_000, 100) == pytest.approx(1e6 * (math.sqrt(1.01) - 1))
    assert dm.depth_to_move(1_000_000, 10) == pytest.approx(499.875, rel=1e-4)


def test_chainlink_fixed_point() -> None:
    assert dm.chainlink_price(300012345678, 8) == pytest.approx(3000.12345678)
    assert dm.chainlink_answer(3000.12345678, 8) == 300012345678
    with pytest.raises(ValueError, match="positive"):
        dm.chainlink_price(0, 8)
