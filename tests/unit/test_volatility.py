"""The grid volatility estimator: known sigma through bid-ask noise, warm start, gaps."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.quoting_models import NS
from makerflow.operators.volatility import GridVolatility


def _noisy_walk(
    sigma: float, seconds: float, *, seed: int, noise: float
) -> list[tuple[int, float]]:
    """A Brownian mid observed at random times (about 20 ticks/s) with i.i.d. bid-ask noise."""
    rng = random.Random(seed)
    t, x, out = 0.0, 60_000.0, []
    while t < seconds:
        dt = rng.expovariate(20.0)
        t += dt
        x += rng.gauss(0.0, sigma * math.sqrt(dt))
        out.append((1_700_000_000 * NS + round(t * NS), x + rng.choice((-noise, noise))))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recovers_a_known_sigma_through_bid_ask_noise(seed: int) -> None:
    # noise of half a spread of 5: on a 1 s grid it adds 2 * 2.5^2 = 12.5 to each squared
    # return against sigma^2 dt = 9; uncorrected the estimate would be ~50 % high.
    sigma = 3.0
    vol = GridVolatility(grid_s=1.0, half_life_s=1e9)
    for ts, mid in _noisy_walk(sigma, 3600.0, seed=seed, noise=2.5):
        vol.update(ts, mid)
    assert vol.sigma == pytest.approx(sigma, rel=0.10)
    raw = math.sqrt(vol.s2 / vol.sw)
    assert raw > 1.3 * sigma  # the noise is really there; the correction removed it


def test_the_tick_level_estimate_is_what_the_grid_fixes() -> None:
    # Same walk with noise: tick-to-tick squared moves are dominated by the noise.
    path = _noisy_walk(3.0, 600.0, seed=7, noise=2.5)
    tick_var = sum((b[1] - a[1]) ** 2 for a, b in itertools.pairwise(path)) / 600.0
    assert math.sqrt(tick_var) > 2 * 3.0


def test_first_return_is_a_full_estimate_not_a_ramp_from_zero() -> None:
    vol = GridVolatility(grid_s=1.0, half_life_s=30.0)
    vol.update(0, 100.0)
    assert vol.sigma == 0.0
    vol.update(NS, 100.0)  # first grid point: sampled, nothing to compare yet
    vol.update(NS + 1, 102.0)
    vol.update(2 * NS, 102.0)  # second grid point: return of 2 over 1 s
    assert vol.returns == 1
    assert vol.sigma == pytest.approx(2.0)


def test_seed_is_the_estimate_until_data_says_otherwise() -> None:
    vol = GridVolatility(grid_s=1.0, half_life_s=30.0, sigma_seed=4.0)
    assert vol.sigma == pytest.approx(4.0)
    vol.update(0, 100.0)
    for s in range(1, 31):
        vol.update(s * NS, 100.0)  # 30 s of a still mid: one half-life
    assert vol.sigma == pytest.approx(4.0 * math.sqrt(0.5), rel=0.05)


def test_a_gap_counts_as_unchanged_mid_and_the_closed_form_matches_steps() -> None:
    stepwise = GridVolatility(grid_s=1.0, half_life_s=20.0)
    jumped = GridVolatility(grid_s=1.0, half_life_s=20.0)
    for vol in (stepwise, jumped):
        for s in range(10):
            vol.update(s * NS, 100.0 + (s % 2))
    for s in range(10, 210):
        stepwise.update(s * NS, 101.0)  # a tick at every grid point
    jumped.update(209 * NS, 101.0)  # one tick after the gap
    stepwise.update(210 * NS, 101.0)
    jumped.update(210 * NS, 101.0)
    assert jumped.returns == stepwise.returns
    assert jumped.sigma == pytest.approx(stepwise.sigma, rel=1e-9)


def test_older_ticks_are_ignored_and_state_round_trips() -> None:
    vol = GridVolatility(grid_s=1.0, half_life_s=20.0)
    for s, m in enumerate([100.0, 101.0, 99.5, 100.5, 102.0]):
        vol.update(s * NS, m)
    before = vol.sigma
    vol.update(NS, 50.0)
    assert vol.sigma == before
    again = GridVolatility.restore(vol.state(), 1.0, 20.0)
    vol.update(9 * NS, 104.0)
    again.update(9 * NS, 104.0)
    assert again.sigma == vol.sigma


@settings(max_examples=60, deadline=None)
@given(
    moves=st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=5, max_size=60),
    gaps=st.lists(st.integers(1, 3 * NS), min_size=60, max_size=60),
    extra=st.lists(st.floats(0.01, 0.99), min_size=0, max_size=30),
)
def test_repeating_an_unchanged_mid_changes_nothing(
    moves: list[float], gaps: list[int], extra: list[float]
) -> None:
    # ticks that repeat the mid in force (a trade tick, a quantity change) add no information
    path, ts, mid = [], 1_700_000_000 * NS, 60_000.0
    for move, gap in zip(moves, gaps, strict=False):
        ts += gap
        mid += move
        path.append((ts, mid))
    plain = GridVolatility(grid_s=1.0, half_life_s=30.0)
    noisy = GridVolatility(grid_s=1.0, half_life_s=30.0)
    for i, (ts, mid) in enumerate(path):
        plain.update(ts, mid)
        noisy.update(ts, mid)
        if i + 1 < len(path) and i < len(extra):
            between = ts + max(1, int((path[i + 1][0] - ts) * extra[i]))
            if between < path[i + 1][0]:
                noisy.update(between, mid)
    assert noisy.returns == plain.returns
    assert noisy.sigma == pytest.approx(plain.sigma, rel=1e-12, abs=1e-12)
