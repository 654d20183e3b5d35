"""Quoting models: where to centre quotes and how wide to make them.

Pure functions and small value classes, no I/O and no clock: the time is the event time the
caller passes in, so a backtest and live trading compute the same quotes.

Avellaneda & Stoikov (2008), "High-frequency trading in a limit order book": with mid price
``s``, inventory ``q`` (in units), risk aversion ``gamma``, volatility ``sigma``, order-book
liquidity ``kappa`` and time left ``tau = T - t``,

    reservation price   r       = s - q * gamma * sigma^2 * tau
    total spread        delta   = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa)

and the quotes are ``r -/+ delta / 2``. The fixed-spread model keeps a constant spread in basis
points and moves its centre against the inventory by a fixed number of bps per unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

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

    def quote(self, mid: float, inventory: float, sigma: float, tau: float) -> ModelQuote:
        """Reservation price and half spread for ``mid``, ``inventory`` units, volatility
        ``sigma`` (price per sqrt(s)) and ``tau`` seconds left."""
        ...


def as_reservation_price(
    mid: float, inventory: float, gamma: float, sigma: float, tau: float
) -> float:
    """Avellaneda-Stoikov reservation price ``s - q gamma sigma^2 tau``."""
    return mid - inventory * gamma * sigma * sigma * tau


def as_total_spread(gamma: float, sigma: float, kappa: float, tau: float) -> float:
    """Avellaneda-Stoikov optimal total spread
    ``gamma sigma^2 tau + (2/gamma) ln(1 + gamma/kappa)``."""
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(gamma / kappa)


def session_time_left(ts: int, horizon_s: float) -> float:
    """Seconds from ``ts`` (ns) to the end of its session, sessions of ``horizon_s`` being
    aligned to the Unix epoch (so every run and every worker agrees on them)."""
    horizon_ns = round(horizon_s * NS)
    return (horizon_ns - ts % horizon_ns) / NS


@dataclass(frozen=True, slots=True)
class AvellanedaStoikov:
    """The Avellaneda-Stoikov model with a finite or a rolling horizon.

    ``rolling=False``: sessions of ``horizon_s`` aligned to the epoch; the time left falls to
    zero at each session's end, so the inventory penalty and the spread's risk part fade.
    ``rolling=True``: the time left is always ``horizon_s``, the usual form for a market that
    never closes.
    """

    gamma: float
    kappa: float
    horizon_s: float
    rolling: bool = True

    def __post_init__(self) -> None:
        for name in ("gamma", "kappa", "horizon_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Avellaneda-Stoikov {name} must be > 0, got {value!r}")

    def time_left(self, ts: int) -> float:
        if self.rolling:
            return self.horizon_s
        return session_time_left(ts, self.horizon_s)

    def quote(self, mid: float, inventory: float, sigma: float, tau: float) -> ModelQuote:
        return ModelQuote(
            reservation=as_reservation_price(mid, inventory, self.gamma, sigma, tau),
            half_spread=as_total_spread(self.gamma, sigma, self.kappa, tau) / 2.0,
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

    def quote(self, mid: float, inventory: float, sigma: float, tau: float) -> ModelQuote:
        return ModelQuote(
            reservation=mid * (1.0 - self.skew_bps_per_unit * inventory / 1e4),
            half_spread=mid * self.half_spread_bps / 1e4,
        )


class EwmaVolatility:
    """Online estimate of the mid price's volatility from ticks, in event time.

    The variance rate (price^2 per second) is an exponentially weighted realized variance:
    each move of the mid adds ``lambda * move^2`` and the sum decays as ``exp(-lambda dt)``
    with ``lambda = ln 2 / half_life_s``. Since the kernel integrates to ``1 / lambda``, the
    estimate's mean is the variance rate of a Brownian mid; it does not depend on how often
    an unchanged mid is sampled, and moves at the same event time all count. Ticks older
    than the last one are ignored.
    """

    __slots__ = ("_decay_per_s", "elapsed_s", "half_life_s", "last_mid", "last_ts", "variance")

    def __init__(
        self,
        half_life_s: float,
        sigma_initial: float = 0.0,
        *,
        last_ts: int | None = None,
        last_mid: float | None = None,
        variance: float | None = None,
        elapsed_s: float = 0.0,
    ) -> None:
        if not (math.isfinite(half_life_s) and half_life_s > 0):
            raise ValueError(f"half_life_s must be > 0, got {half_life_s!r}")
        self.half_life_s = half_life_s
        self._decay_per_s = math.log(2.0) / half_life_s
        self.variance = sigma_initial * sigma_initial if variance is None else variance
        self.last_ts = last_ts
        self.last_mid = last_mid
        self.elapsed_s = elapsed_s
        """Event time covered by the ticks seen so far (for warm-up)."""

    @property
    def sigma(self) -> float:
        return math.sqrt(self.variance)

    def update(self, ts: int, mid: float) -> None:
        if self.last_ts is None or self.last_mid is None:
            self.last_ts, self.last_mid = ts, mid
            return
        if ts < self.last_ts:
            return
        dt = (ts - self.last_ts) / NS
        move = mid - self.last_mid
        if dt > 0:
            self.variance *= math.exp(-self._decay_per_s * dt)
        self.variance += self._decay_per_s * move * move
        self.elapsed_s += dt
        self.last_ts, self.last_mid = ts, mid

    def set_half_life(self, half_life_s: float) -> None:
        if not (math.isfinite(half_life_s) and half_life_s > 0):
            raise ValueError(f"half_life_s must be > 0, got {half_life_s!r}")
        self.half_life_s = half_life_s
        self._decay_per_s = math.log(2.0) / half_life_s
