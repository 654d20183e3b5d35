"""The trade-intensity fit: known A and kappa from simulated arrivals, bounds, fallback."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.intensity import TradeIntensity
from makerflow.operators.quoting_models import NS

T0 = 1_700_000_000 * NS


def _simulate(est: TradeIntensity, a: float, kappa: float, seconds: float, seed: int) -> None:
    """Aggressive orders arrive on each side at rate ``a``; each reaches a depth drawn from
    Exp(kappa), so the rate reaching at least ``delta`` is ``a exp(-kappa delta)``."""
    rng = random.Random(seed)
    for _side in range(2):
        t = 0.0
        while True:
            t += rng.expovariate(a)
            if t >= seconds:
                break
            est.add(T0 + round(t * NS), rng.expovariate(kappa))
    est.last_ts = T0 + round(seconds * NS)


@pytest.mark.parametrize(("a", "kappa", "seed"), [(8.0, 0.3, 1), (2.0, 1.5, 2), (20.0, 0.05, 3)])
def test_recovers_known_a_and_kappa(a: float, kappa: float, seed: int) -> None:
    # bins span about 3 mean depths, as the default step does on the recorded BTC data
    est = TradeIntensity(step=3.0 / kappa / 40, window_s=600.0, slice_s=10.0)
    _simulate(est, a, kappa, 600.0, seed)
    fit = est.fit()
    assert fit is not None
    assert fit.kappa == pytest.approx(kappa, rel=0.15)
    assert fit.a == pytest.approx(a, rel=0.15)


def test_too_few_trades_is_no_estimate() -> None:
    est = TradeIntensity(step=0.25, min_trades=200)
    _simulate(est, 0.1, 0.3, 300.0, 4)
    assert est.fit() is None


def test_kappa_is_kept_within_its_bounds() -> None:
    est = TradeIntensity(step=0.25, kappa_min=0.5, kappa_max=2.0)
    _simulate(est, 8.0, 0.3, 300.0, 5)
    fit = est.fit()
    assert fit is not None and fit.kappa == 0.5


def test_old_slices_leave_the_window() -> None:
    est = TradeIntensity(step=0.25, window_s=60.0, slice_s=10.0, min_trades=50)
    _simulate(est, 8.0, 0.3, 300.0, 6)
    assert len(est.slices) <= 6
    assert est.covered_s() == pytest.approx(60.0, abs=10.0)
    fit = est.fit()
    assert fit is not None and fit.kappa == pytest.approx(0.3, rel=0.3)


def test_refit_waits_for_the_refit_interval_and_state_round_trips() -> None:
    est = TradeIntensity(step=0.25, refit_s=5.0)
    _simulate(est, 8.0, 0.3, 120.0, 7)
    first = est.estimate(T0 + 120 * NS)
    est.add(T0 + 121 * NS, 30.0)
    assert est.estimate(T0 + 122 * NS) is first
    assert est.estimate(T0 + 126 * NS) is not first
    again = TradeIntensity(step=0.25, refit_s=5.0)
    again.load(est.state())
    assert again.fit() == est.fit()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rotate=st.integers(0, 500))
def test_the_fit_does_not_depend_on_the_order_trades_arrive_in(seed: int, rotate: int) -> None:
    rng = random.Random(seed)
    trades = [(T0 + rng.randrange(0, 60 * NS), rng.expovariate(0.5)) for _ in range(600)]
    in_order = TradeIntensity(step=0.25, window_s=120.0, min_trades=100)
    shuffled = TradeIntensity(step=0.25, window_s=120.0, min_trades=100)
    for ts, d in sorted(trades):
        in_order.add(ts, d)
    mixed = trades[rotate:] + trades[:rotate]
    rng.shuffle(mixed)
    for ts, d in mixed:
        shuffled.add(ts, d)
    assert shuffled.state()[:3] == in_order.state()[:3]
    assert shuffled.fit() == in_order.fit()
