"""Pure price math of Uniswap V2 pairs, Uniswap V3 pools and Chainlink answers.

On chain, amounts are integers in each token's smallest unit, and a pool's tokens are ordered
by address (``token0 < token1``), not by which one a trader calls the base. Every function here
takes raw on-chain integers plus the tokens' decimals and says which side is the base, and
returns the human price of one base unit in quote units.
"""

from __future__ import annotations

import math
from fractions import Fraction

Q96 = 1 << 96
"""Uniswap V3's fixed-point scale: ``sqrtPriceX96 = sqrt(token1/token0 raw) * 2**96``."""

MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
"""The bounds of ``sqrtPriceX96`` a V3 pool can hold (TickMath)."""

TICK_BASE = 1.0001


def _scale(decimals0: int, decimals1: int) -> Fraction:
    # A raw token1-per-token0 ratio times 10**(d0 - d1) is the human token1-per-token0 price.
    return Fraction(10) ** (decimals0 - decimals1)


def _oriented(price_1_per_0: Fraction, base_is_token0: bool) -> float:
    if price_1_per_0 <= 0:
        raise ValueError("a pool price must be positive; the pool is empty or uninitialised")
    return float(price_1_per_0 if base_is_token0 else 1 / price_1_per_0)


def v2_price(
    reserve0: int, reserve1: int, decimals0: int, decimals1: int, *, base_is_token0: bool
) -> float:
    """The mid price of a V2 pair from its reserves: quote per base, in human units."""
    if reserve0 <= 0 or reserve1 <= 0:
        raise ValueError(f"V2 reserves must be positive, got ({reserve0}, {reserve1})")
    return _oriented(Fraction(reserve1, reserve0) * _scale(decimals0, decimals1), base_is_token0)


def v2_quote_reserve(
    reserve0: int, reserve1: int, decimals0: int, decimals1: int, *, base_is_token0: bool
) -> float:
    """The pair's quote-side reserve in quote units."""
    quote_raw, quote_dec = (reserve1, decimals1) if base_is_token0 else (reserve0, decimals0)
    return quote_raw / 10**quote_dec


def depth_to_move(quote_reserve: float, move_bps: float) -> float:
    """The quote notional a buyer pays to lift a constant-product pool's price by ``move_bps``.

    With ``x * y = k`` the price is ``y / x``; raising it by a factor ``1 + d`` takes the quote
    reserve from ``y`` to ``y * sqrt(1 + d)``. This makes a pool's weight comparable to a CEX
    book's depth near the touch, where a pool's total value would swamp it.
    """
    return quote_reserve * (math.sqrt(1.0 + move_bps / 10_000.0) - 1.0)


def v3_price(sqrt_price_x96: int, decimals0: int, decimals1: int, *, base_is_token0: bool) -> float:
    """The price of a V3 pool from ``slot0.sqrtPriceX96``: quote per base, in human units."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 <= MAX_SQRT_RATIO:
        raise ValueError(f"sqrtPriceX96 {sqrt_price_x96} is outside a V3 pool's range")
    raw = Fraction(sqrt_price_x96 * sqrt_price_x96, Q96 * Q96)
    return _oriented(raw * _scale(decimals0, decimals1), base_is_token0)


def v3_virtual_reserves(liquidity: int, sqrt_price_x96: int) -> tuple[float, float]:
    """The raw (token0, token1) amounts a constant-product pool with the same active liquidity
    would hold at this price: ``x = L / sqrtP``, ``y = L * sqrtP``."""
    if sqrt_price_x96 <= 0:
        raise ValueError("sqrtPriceX96 must be positive")
    return liquidity * Q96 / sqrt_price_x96, liquidity * sqrt_price_x96 / Q96


def v3_quote_reserve(
    liquidity: int, sqrt_price_x96: int, decimals0: int, decimals1: int, *, base_is_token0: bool
) -> float:
    """The virtual quote reserve of the pool's active liquidity, in quote units: what a V2
    pair with the same depth at this price would hold (exact while the price stays inside
    the active tick range)."""
    x, y = v3_virtual_reserves(liquidity, sqrt_price_x96)
    return y / 10**decimals1 if base_is_token0 else x / 10**decimals0


def sqrt_price_x96_from_price(
    price: float, decimals0: int, decimals1: int, *, base_is_token0: bool
) -> int:
    """The ``sqrtPriceX96`` at which a pool quotes ``price`` (quote per base, human units).

    The inverse of :func:`v3_price`; the local chain uses it to set a pool's price.
    """
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    p = Fraction(price) if base_is_token0 else 1 / Fraction(price)
    raw = p / _scale(decimals0, decimals1)
    # isqrt on the scaled ratio keeps every bit an integer square root can give.
    value = math.isqrt(raw.numerator * Q96 * Q96 // raw.denominator)
    if not MIN_SQRT_RATIO <= value <= MAX_SQRT_RATIO:
        raise ValueError(f"price {price} is outside what a V3 pool can represent")
    return value


def tick_at_sqrt_price(sqrt_price_x96: int) -> int:
    """The tick whose price is at or below the pool's price: ``floor(log_1.0001(P))``."""
    raw = (sqrt_price_x96 / Q96) ** 2
    return math.floor(math.log(raw) / math.log(TICK_BASE))


def v2_reserves_for_price(
    price: float,
    quote_depth: float,
    decimals0: int,
    decimals1: int,
    *,
    base_is_token0: bool,
) -> tuple[int, int]:
    """Raw (reserve0, reserve1) of a pair quoting ``price`` and worth ``quote_depth`` in quote
    units (half on each side); the local chain uses it to set a pair's price."""
    if not price > 0 or not quote_depth > 0:
        raise ValueError("price and depth must be positive")
    quote_amount = quote_depth / 2.0
    base_amount = quote_amount / price
    if base_is_token0:
        return round(base_amount * 10**decimals0), round(quote_amount * 10**decimals1)
    return round(quote_amount * 10**decimals0), round(base_amount * 10**decimals1)


def chainlink_price(answer: int, decimals: int) -> float:
    """A Chainlink answer in human units (answers are fixed-point with ``decimals``)."""
    if answer <= 0:
        raise ValueError(f"a Chainlink answer must be positive, got {answer}")
    return answer / 10**decimals


def chainlink_answer(price: float, decimals: int) -> int:
    """The fixed-point answer a feed with ``decimals`` reports for ``price``."""
    return round(Fraction(price) * 10**decimals)
