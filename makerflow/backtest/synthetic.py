"""The synthetic market of Avellaneda & Stoikov (2008), section 3.3, for validating quoting models.

The mid is a symmetric random walk, ``S(t + dt) = S(t) +/- sigma sqrt(dt)`` with probability
one half each. At each step a quote at distance ``delta`` from the mid is hit with probability
``A exp(-kappa delta) dt`` (one unit per fill, each side drawn on its own). Two strategies trade
the same paths (common random numbers, so their difference is not noise):

* **inventory**: quotes around the reservation price ``r = S - q gamma sigma^2 (T - t)``;
* **symmetric**: the same total spread, centred on the mid.

The reservation price and spread come from the project's own
:class:`makerflow.operators.quoting_models.AvellanedaStoikov` (finite horizon ``T``, so the
time left is ``T - t``), evaluated on numpy arrays of every path at once: the model is plain
arithmetic, so it vectorises over paths unchanged.

Profit is the terminal wealth ``X_T + q_T S_T`` (cash plus inventory marked at the final mid),
as in the paper's tables. Pure: everything follows from the arguments and the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from makerflow.operators.quoting_models import AvellanedaStoikov

STRATEGIES = ("inventory", "symmetric")


@dataclass(frozen=True, slots=True)
class SyntheticParams:
    """The market and the strategy. Defaults are the paper's (section 3.3, gamma = 0.1)."""

    gamma: float = 0.1
    sigma: float = 2.0
    kappa: float = 1.5
    A: float = 140.0
    T: float = 1.0
    dt: float = 0.005
    s0: float = 100.0
    paths: int = 1000
    seed: int = 0
    q0: int = 0

    def __post_init__(self) -> None:
        for name in ("sigma", "A", "T", "dt"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"synthetic market {name} must be > 0, got {value!r}")
        if self.dt > self.T:
            raise ValueError(f"dt ({self.dt}) must not exceed the horizon T ({self.T})")
        if self.paths < 2:
            raise ValueError(f"paths must be >= 2 for a standard deviation, got {self.paths}")

    @property
    def steps(self) -> int:
        return round(self.T / self.dt)


@dataclass(frozen=True, slots=True)
class PathResults:
    """Per path, for one strategy: terminal profit and inventory, fills, the mean spread."""

    profit: np.ndarray
    final_q: np.ndarray
    fills: np.ndarray
    mean_spread: float

    def summary(self) -> dict[str, float]:
        return {
            "mean_profit": float(self.profit.mean()),
            "std_profit": float(self.profit.std(ddof=1)),
            "mean_final_q": float(self.final_q.mean()),
            "std_final_q": float(self.final_q.std(ddof=1)),
            "mean_spread": self.mean_spread,
            "mean_fills": float(self.fills.mean()),
        }


def simulate(p: SyntheticParams) -> dict[str, PathResults]:
    """Every path of both strategies, vectorised over paths (one loop over time steps)."""
    model = AvellanedaStoikov(gamma=p.gamma, kappa=p.kappa, horizon_s=p.T, rolling=False)
    rng = np.random.default_rng(p.seed)
    n, steps = p.paths, p.steps
    step = p.sigma * math.sqrt(p.dt)
    mid = np.full(n, p.s0)
    q = {s: np.full(n, float(p.q0)) for s in STRATEGIES}
    cash = {s: np.zeros(n) for s in STRATEGIES}
    fills = {s: np.zeros(n) for s in STRATEGIES}
    spread_sum = 0.0
    for k in range(steps):
        tau = p.T - k * p.dt
        # The same draws for both strategies: a fill happens when u < lambda(delta) dt.
        u_bid = rng.random(n)
        u_ask = rng.random(n)
        up = rng.random(n) < 0.5
        for s in STRATEGIES:
            inventory = q[s] if s == "inventory" else np.zeros(n)
            # AvellanedaStoikov.quote is arithmetic on its arguments: arrays in, arrays out.
            quote = model.quote(cast(Any, mid), cast(Any, inventory), p.sigma, tau)
            centre = np.asarray(quote.reservation, dtype=float)
            half = float(quote.half_spread)
            delta_bid = mid - (centre - half)
            delta_ask = (centre + half) - mid
            bid_hit = u_bid < np.minimum(1.0, p.A * np.exp(-p.kappa * delta_bid) * p.dt)
            ask_hit = u_ask < np.minimum(1.0, p.A * np.exp(-p.kappa * delta_ask) * p.dt)
            q[s] += bid_hit.astype(float) - ask_hit.astype(float)
            cash[s] += np.where(ask_hit, centre + half, 0.0) - np.where(bid_hit, centre - half, 0.0)
            fills[s] += bid_hit.astype(float) + ask_hit.astype(float)
        spread_sum += 2.0 * half
        mid = mid + np.where(up, step, -step)
    mean_spread = spread_sum / steps
    return {
        s: PathResults(
            profit=cash[s] + q[s] * mid, final_q=q[s], fills=fills[s], mean_spread=mean_spread
        )
        for s in STRATEGIES
    }


def run_synthetic(
    gamma: float = 0.1,
    sigma: float = 2.0,
    kappa: float = 1.5,
    A: float = 140.0,
    T: float = 1.0,
    dt: float = 0.005,
    s0: float = 100.0,
    paths: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{"inventory": {...}, "symmetric": {...}}``, each with ``mean_profit``,
    ``std_profit``, ``mean_final_q``, ``std_final_q``, ``mean_spread`` (and ``mean_fills``)
    over ``paths`` seeded Monte-Carlo paths."""
    params = SyntheticParams(
        gamma=gamma, sigma=sigma, kappa=kappa, A=A, T=T, dt=dt, s0=s0, paths=paths, seed=seed
    )
    return {name: result.summary() for name, result in simulate(params).items()}
