"""Quoting models: where to centre quotes and how wide to make them.

Pure functions and small value classes, no I/O and no clock: the time is the event time the
caller passes in, so a backtest and live trading compute the same quotes.

Units. The inventory ``q`` is in base units (BTC), the order size ``Delta`` too; prices and
``sigma`` (price per sqrt(s)) are in the quote currency, ``kappa`` in 1/price, ``A`` in 1/s and
the risk aversion ``gamma`` in 1/quote currency (a CARA utility of wealth). So ``gamma``
keeps its meaning when the order size changes; the spread's liquidity term depends on the
dimensionless ``gamma Delta / kappa``.

Avellaneda & Stoikov (2008), "High-frequency trading in a limit order book", with orders of
``Delta`` and ``tau = T - t`` left:

    reservation price   r       = s - q gamma sigma^2 tau
    total spread        delta   = Delta gamma sigma^2 tau
                                  + (2 / (gamma Delta)) ln(1 + gamma Delta / kappa)

(with ``Delta = 1`` the paper's formulas). Gueant, Lehalle & Fernandez-Tapia (2013), "Dealing
with the inventory risk", the closed-form approximation of the infinite-horizon quotes with
inventory bounds (``xi = gamma``):

    c1 = (1 / (gamma Delta)) ln(1 + gamma Delta / kappa)
    c2 = sqrt( gamma / (2 A Delta kappa) (1 + gamma Delta / kappa)^(kappa / (gamma Delta) + 1) )
    bid depth = c1 + (2 q + Delta) / 2 sigma c2,   ask depth = c1 - (2 q - Delta) / 2 sigma c2

that is a half spread ``c1 + Delta sigma c2 / 2`` around ``r = s - q sigma c2``; no horizon,
no session boundary, the form for a market that never closes. Its inventory bounds are the
quoter's ``max_position``: at the bound the side that would pass it is not quoted.

The fixed-spread model keeps a constant spread in basis points and moves its centre against
the inventory by a fixed number of bps per base unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from makerflow.operators.intensity import Intensity

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ModelQuote:
    """A model's answer: the price to centre on and the distance of each side from it."""

    reservation: float
    half_spread: float

    @property
    def bid(self) -> float:
        return self.reservation - self.half_spread

    @property
    def ask(self) -> float:
        return self.reservation + self.half_spread


class QuotingModel(Protocol):
    """What the quoter needs from a model."""

    def time_left(self, ts: int) -> float:
        """Seconds left in the horizon at event time ``ts`` (ns)."""
        ...

    def quote(
        self,
        mid: float,
        inventory: float,
        sigma: float,
        tau: float,
        liquidity: Intensity | None = None,
    ) -> ModelQuote:
        """Reservation price and half spread for ``mid``, ``inventory`` base units,
        volatility ``sigma`` (price per sqrt(s)), ``tau`` seconds left and, when known, the
        estimated order-arrival intensity (else the model's own ``A`` and ``kappa``)."""
        ...


def as_reservation_price(
    mid: float, inventory: float, gamma: float, sigma: float, tau: float
) -> float:
    """Avellaneda-Stoikov reservation price ``s - q gamma sigma^2 tau``."""
    return mid - inventory * gamma * sigma * sigma * tau


def as_total_spread(
    gamma: float, sigma: float, kappa: float, tau: float, order_size: float = 1.0
) -> float:
    """Avellaneda-Stoikov optimal total spread for orders of ``order_size``:
    ``Delta gamma sigma^2 tau + (2/(gamma Delta)) ln(1 + gamma Delta/kappa)``."""
    gd = gamma * order_size
    return gd * sigma * sigma * tau + (2.0 / gd) * math.log1p(gd / kappa)


def glft_coefficients(
    gamma: float, a: float, kappa: float, order_size: float
) -> tuple[float, float]:
    """``(c1, c2)`` of the Gueant-Lehalle-Fernandez-Tapia approximation (``xi = gamma``)."""
    gd = gamma * order_size
    c1 = math.log1p(gd / kappa) / gd
    # (1 + x)^(1/x + 1) in logs: stable for the small x = gamma Delta / kappa of real markets
    x = gd / kappa
    growth = math.exp((1.0 / x + 1.0) * math.log1p(x))
    c2 = math.sqrt(gamma / (2.0 * a * order_size * kappa) * growth)
    return c1, c2


def _check_positive(model: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{model} {name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class AvellanedaStoikov:
    """The Avellaneda-Stoikov model with a rolling or a finite horizon.

    ``rolling=True``: the time left is always ``horizon_s`` (the stationary form; its
    ``horizon_s`` sets how long inventory is assumed to be held).
    ``rolling=False``: the time left runs down to ``session_end_ns`` (event time, ns), a
    real end of trading such as a market's close or a contract's expiry, and stays at zero
    after it. There are no repeating sessions: restarting the horizon every ``horizon_s``
    would reset the inventory skew to zero at each boundary (a saw-tooth), which is wrong
    for a market that trades on.
    """

    gamma: float
    kappa: float
    horizon_s: float
    rolling: bool = True
    order_size: float = 1.0
    session_end_ns: int = 0

    def __post_init__(self) -> None:
        _check_positive(
            "Avellaneda-Stoikov",
            gamma=self.gamma,
            kappa=self.kappa,
            horizon_s=self.horizon_s,
            order_size=self.order_size,
        )

    def time_left(self, ts: int) -> float:
        if self.rolling:
            return self.horizon_s
        if self.session_end_ns <= 0:
            # (a caller that passes tau itself, as a simulation of one session does, needs
            # no end time: only this method does)
            raise ValueError(
                "a finite Avellaneda-Stoikov horizon needs session_end_ns (the event time"
                " trading ends); for a market that never closes use rolling or glft"
            )
        return max(0.0, (self.session_end_ns - ts) / NS)

    def quote(
        self,
        mid: float,
        inventory: float,
        sigma: float,
        tau: float,
        liquidity: Intensity | None = None,
    ) -> ModelQuote:
        kappa = liquidity.kappa if liquidity is not None else self.kappa
        spread = as_total_spread(self.gamma, sigma, kappa, tau, self.order_size)
        return ModelQuote(
            reservation=as_reservation_price(mid, inventory, self.gamma, sigma, tau),
            half_spread=spread / 2.0,
        )


@dataclass(frozen=True, slots=True)
class Glft:
    """Gueant-Lehalle-Fernandez-Tapia's infinite-horizon quotes (closed-form approximation).

    ``a`` and ``kappa`` are used until an estimate of the arrival intensity is passed in.
    """

    gamma: float
    a: float
    kappa: float
    order_size: float

    def __post_init__(self) -> None:
        _check_positive(
            "GLFT", gamma=self.gamma, a=self.a, kappa=self.kappa, order_size=self.order_size
        )

    def time_left(self, ts: int) -> float:
        return math.inf

    def quote(
        self,
        mid: float,
        inventory: float,
        sigma: float,
        tau: float,
        liquidity: Intensity | None = None,
    ) -> ModelQuote:
        a, kappa = (liquidity.a, liquidity.kappa) if liquidity is not None else (self.a, self.kappa)
        c1, c2 = glft_coefficients(self.gamma, a, kappa, self.order_size)
        skew = sigma * c2
        return ModelQuote(
            reservation=mid - inventory * skew,
            half_spread=c1 + self.order_size * skew / 2.0,
        )


@dataclass(frozen=True, slots=True)
class FixedSpread:
    """A constant spread around a centre skewed against the inventory.

    reservation = mid * (1 - skew_bps_per_unit * q / 1e4), half spread = half_spread_bps of
    mid; volatility and time do not enter.
    """

    half_spread_bps: float
    skew_bps_per_unit: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_spread_bps) and self.half_spread_bps >= 0):
            raise ValueError(f"half_spread_bps must be >= 0, got {self.half_spread_bps!r}")

    def time_left(self, ts: int) -> float:
        return 0.0

    def quote(
        self,
        mid: float,
        inventory: float,
        sigma: float,
        tau: float,
        liquidity: Intensity | None = None,
    ) -> ModelQuote:
        return ModelQuote(
            reservation=mid * (1.0 - self.skew_bps_per_unit * inventory / 1e4),
            half_spread=mid * self.half_spread_bps / 1e4,
        )
