"""Quote ladders: several levels a side, rounded to what the exchange accepts.

Pure functions. A :class:`MarketSpec` holds a market's trading rules (tick, lot, minimum
quantity and notional), built by hand or from a ccxt market. :func:`build_ladder` turns a
model's reservation price and half spread into the levels to rest: clamped to the minimum and
maximum spread, spaced, sized, kept inside a price band around the reference price, kept from
crossing the book (post-only orders would be rejected), and rounded away from the touch: bids
down and asks up to the tick, quantities down to the lot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

# ccxt's precision modes (ccxt.base.decimal_to_precision); repeated here so that the pure
# logic does not import the exchange library.
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

_EPS = 1e-9
"""Relative slack for float noise when a price or quantity is already on the grid."""


def _decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """A market's trading rules: price tick, quantity lot, minimum quantity and notional."""

    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0
    price_decimals: int = field(init=False, repr=False, compare=False)
    qty_decimals: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("min_qty", "min_notional"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        # decimals of the grids, computed once: rounding happens on every tick
        object.__setattr__(self, "price_decimals", _decimals(self.tick_size))
        object.__setattr__(self, "qty_decimals", _decimals(self.lot_size))

    def price_down(self, price: float) -> float:
        """The largest price on the tick grid that is <= ``price`` (for bids)."""
        return _grid_down(price, self.tick_size, self.price_decimals)

    def price_up(self, price: float) -> float:
        """The smallest price on the tick grid that is >= ``price`` (for asks)."""
        return _grid_up(price, self.tick_size, self.price_decimals)

    def qty_down(self, qty: float) -> float:
        """The largest quantity on the lot grid that is <= ``qty``."""
        return _grid_down(qty, self.lot_size, self.qty_decimals)

    def shift(self, price: float, ticks: int) -> float:
        """``price`` (on the grid) moved by ``ticks`` ticks."""
        return round(price + ticks * self.tick_size, self.price_decimals)

    def tradable(self, price: float, qty: float) -> bool:
        """Whether the exchange would accept an order of ``qty`` at ``price``."""
        return (
            price > 0
            and qty >= self.lot_size * (1 - _EPS)
            and qty >= self.min_qty * (1 - _EPS)
            and price * qty >= self.min_notional * (1 - _EPS)
        )


def _grid_down(x: float, step: float, decimals: int) -> float:
    # Grid points are decimals (k * step, ``decimals`` places); ``round`` gives the float
    # nearest to each. Comparing x with those floats (not x / step with floor alone, which
    # float error can push across a grid point) gives exactly what ccxt's string-based
    # truncation gives for the decimal x prints as.
    n = math.floor(x / step)
    up = round((n + 1) * step, decimals)
    if up <= x:
        return up
    at = round(n * step, decimals)
    return at if at <= x else round((n - 1) * step, decimals)


def _grid_up(x: float, step: float, decimals: int) -> float:
    n = math.ceil(x / step)
    down = round((n - 1) * step, decimals)
    if down >= x:
        return down
    at = round(n * step, decimals)
    return at if at >= x else round((n + 1) * step, decimals)


def _step(value: Any, mode: int, what: str) -> float:
    if value is None:
        raise ValueError(f"the ccxt market has no precision.{what}; configure it by hand")
    if mode == TICK_SIZE:
        return float(value)
    if mode == DECIMAL_PLACES:
        return float(Decimal(1).scaleb(-int(value)))
    if mode == SIGNIFICANT_DIGITS:
        raise ValueError(
            "ccxt SIGNIFICANT_DIGITS precision has no fixed tick; configure tick_size and"
            " lot_size by hand for this market"
        )
    raise ValueError(f"unknown ccxt precisionMode {mode!r}")


def _limit(market: Mapping[str, Any], kind: str) -> float:
    value = ((market.get("limits") or {}).get(kind) or {}).get("min")
    return float(value) if value is not None else 0.0


def from_ccxt_market(market: Mapping[str, Any], precision_mode: int = TICK_SIZE) -> MarketSpec:
    """The trading rules of a ccxt unified market (an entry of ``exchange.markets``).

    ``precision_mode`` is the exchange's ``exchange.precisionMode``: with ``TICK_SIZE`` (4,
    most exchanges in ccxt 4) ``precision.price`` is the tick itself (``0.01``); with
    ``DECIMAL_PLACES`` (2) it is a number of decimals (``2`` means a tick of 0.01).
    """
    precision = market.get("precision") or {}
    return MarketSpec(
        tick_size=_step(precision.get("price"), precision_mode, "price"),
        lot_size=_step(precision.get("amount"), precision_mode, "amount"),
        min_qty=_limit(market, "amount"),
        min_notional=_limit(market, "cost"),
    )


class LadderLevel(NamedTuple):
    """One level of a ladder (a named tuple: built on every tick, so it must be cheap)."""

    level: int
    """Position in the ladder, 0 at the touch; kept when a level before it is left out."""
    price: float
    qty: float


@dataclass(frozen=True, slots=True)
class Ladder:
    """The levels to rest on each side, best first, and the half spread actually used."""

    bids: tuple[LadderLevel, ...]
    asks: tuple[LadderLevel, ...]
    half_spread: float


@dataclass(frozen=True, slots=True)
class LadderShape:
    """How a ladder is laid out; distances in basis points of the reference price."""

    levels: int = 1
    level_spacing_bps: float = 2.0
    order_size: float = 0.001
    size_multiplier: float = 1.0
    sizes: tuple[float, ...] = ()
    """Explicit sizes per level; when given they replace ``order_size``/``size_multiplier``."""
    min_spread_bps: float = 0.0
    max_spread_bps: float = 0.0
    """0 means no upper bound."""
    price_band_bps: float = 0.0
    """0 means no band."""

    def size(self, level: int) -> float:
        if self.sizes:
            return self.sizes[level] if level < len(self.sizes) else 0.0
        return self.order_size * self.size_multiplier**level


def level_quantities(spec: MarketSpec, shape: LadderShape) -> tuple[float, ...]:
    """Each level's quantity rounded down to the lot (a caller quoting every tick computes
    them once per shape and passes them to :func:`build_ladder`)."""
    return tuple(spec.qty_down(shape.size(i)) for i in range(shape.levels))


def inventory_sizes(
    spec: MarketSpec,
    qtys: Sequence[float],
    excess: float,
    limit: float,
    size_skew: float,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The bid and ask level sizes for an inventory ``excess`` over its target (base units)
    under a position ``limit``; None means the configured ``qtys``.

    The side that adds to the inventory quotes ``1 - size_skew * |excess| / limit`` of each
    size, and its levels together never take the inventory past ``limit`` even if all fill;
    the reducing side keeps its sizes, within ``limit`` on the other side. Sizes are rounded
    down to the lot (a level too small to trade is then left out by :func:`build_ladder`).
    """
    if excess == 0.0 and sum(qtys) <= limit:
        return None, None  # flat: both sides as configured (the common case)
    factor = 1.0 - size_skew * min(1.0, abs(excess) / limit)
    adding = _capped(spec, qtys, factor, limit - abs(excess))
    reducing = _capped(spec, qtys, 1.0, limit + abs(excess))
    return (adding, reducing) if excess >= 0 else (reducing, adding)


def _capped(
    spec: MarketSpec, qtys: Sequence[float], factor: float, room: float
) -> tuple[float, ...]:
    out = []
    for qty in qtys:
        q = spec.qty_down(max(0.0, min(qty * factor, room)))
        room -= q
        out.append(q)
    return tuple(out)


def clamp_half_spread(half_spread: float, reference: float, shape: LadderShape) -> float:
    """``half_spread`` kept within half the minimum and maximum spreads."""
    lo = reference * shape.min_spread_bps / 2e4
    hs = max(half_spread, lo)
    if shape.max_spread_bps > 0:
        hs = min(hs, reference * shape.max_spread_bps / 2e4)
    return hs


def build_ladder(
    *,
    reservation: float,
    half_spread: float,
    reference: float,
    spec: MarketSpec,
    shape: LadderShape,
    best_bid: float | None = None,
    best_ask: float | None = None,
    quote_bids: bool = True,
    quote_asks: bool = True,
    qtys: Sequence[float] | None = None,
    bid_qtys: Sequence[float] | None = None,
    ask_qtys: Sequence[float] | None = None,
) -> Ladder:
    """The ladder around ``reservation``.

    Level ``i`` of the bids is at ``reservation - half_spread - i * spacing`` rounded down to
    the tick, of the asks at ``reservation + half_spread + i * spacing`` rounded up. A bid is
    kept below ``best_ask`` and an ask above ``best_bid`` (post-only orders must not cross),
    each level at least one tick beyond the one before. Levels outside the price band around
    ``reference``, or too small for the market after rounding, are left out.
    ``bid_qtys`` / ``ask_qtys`` (already on the lot grid) replace ``qtys`` for one side,
    for a size skewed with the inventory.
    """
    hs = clamp_half_spread(half_spread, reference, shape)
    spacing = reference * shape.level_spacing_bps / 1e4
    # a hair of slack so that a level exactly on the band's edge is kept despite float error
    band = (
        reference * shape.price_band_bps / 1e4 * (1 + _EPS)
        if shape.price_band_bps > 0
        else math.inf
    )
    bids: list[LadderLevel] = []
    asks: list[LadderLevel] = []
    if qtys is None:
        qtys = level_quantities(spec, shape)
    if quote_bids:
        side_qtys = qtys if bid_qtys is None else bid_qtys
        ceiling = spec.shift(spec.price_down(best_ask), -1) if best_ask is not None else math.inf
        for i, qty in enumerate(side_qtys):
            price = min(spec.price_down(reservation - hs - i * spacing), ceiling)
            ceiling = spec.shift(price, -1)
            if abs(price - reference) <= band and spec.tradable(price, qty):
                bids.append(LadderLevel(i, price, qty))
    if quote_asks:
        side_qtys = qtys if ask_qtys is None else ask_qtys
        floor = spec.shift(spec.price_up(best_bid), 1) if best_bid is not None else -math.inf
        for i, qty in enumerate(side_qtys):
            price = max(spec.price_up(reservation + hs + i * spacing), floor)
            floor = spec.shift(price, 1)
            if abs(price - reference) <= band and spec.tradable(price, qty):
                asks.append(LadderLevel(i, price, qty))
    return Ladder(bids=tuple(bids), asks=tuple(asks), half_spread=hs)
