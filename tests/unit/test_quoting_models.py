"""Quoting models against numbers worked out by hand from the Avellaneda-Stoikov formulas

    r = s - q * gamma * sigma^2 * (T - t)
    delta_total = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / kappa)

and against what a user expects of an inventory skew."""

from __future__ import annotations

import math
from typing import Any

import pytest

from makerflow.operators.quoting_models import (
    AvellanedaStoikov,
    EwmaVolatility,
    FixedSpread,
    as_reservation_price,
    as_total_spread,
    session_time_left,
)

NS = 1_000_000_000


def test_reservation_price_and_spread_match_hand_computed_values() -> None:
    # s = 100, q = 2, gamma = 0.1, sigma = 2, kappa = 1.5, T - t = 0.5
    # gamma sigma^2 tau = 0.1 * 4 * 0.5 = 0.2
    # r = 100 - 2 * 0.2 = 99.6
    # (2 / 0.1) ln(1 + 0.1 / 1.5) = 20 ln(16/15) = 20 * 0.0645385211 = 1.290770423
    # delta = 0.2 + 1.290770423 = 1.490770423; half = 0.745385211
    assert as_reservation_price(100.0, 2.0, 0.1, 2.0, 0.5) == pytest.approx(99.6, abs=1e-12)
    assert as_total_spread(0.1, 2.0, 1.5, 0.5) == pytest.approx(1.490770423, abs=1e-9)
    q = AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=0.5).quote(100.0, 2.0, 2.0, 0.5)
    assert q.reservation == pytest.approx(99.6, abs=1e-12)
    assert q.half_spread == pytest.approx(0.745385211, abs=1e-9)
    assert q.bid == pytest.approx(98.854614789, abs=1e-9)
    assert q.ask == pytest.approx(100.345385211, abs=1e-9)


def test_short_inventory_and_longer_horizon() -> None:
    # s = 2500, q = -3, gamma = 0.01, sigma = 1.5, kappa = 0.5, T - t = 20
    # gamma sigma^2 tau = 0.01 * 2.25 * 20 = 0.45
    # r = 2500 + 3 * 0.45 = 2501.35
    # (2 / 0.01) ln(1 + 0.01 / 0.5) = 200 ln(1.02) = 200 * 0.0198026273 = 3.960525459
    # delta = 0.45 + 3.960525459 = 4.410525459
    q = AvellanedaStoikov(gamma=0.01, kappa=0.5, horizon_s=20).quote(2500.0, -3.0, 1.5, 20.0)
    assert q.reservation == pytest.approx(2501.35, abs=1e-9)
    assert 2 * q.half_spread == pytest.approx(4.410525459, abs=1e-9)


def test_finite_horizon_runs_down_within_epoch_aligned_sessions() -> None:
    model = AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=False)
    # 1_700_000_025 s = 28_333_333 * 60 + 45: 45 s into a 60 s session, 15 s left
    ts = 1_700_000_025 * NS
    assert model.time_left(ts) == 15.0
    # with s = 100, q = -1, sigma = 2: gamma sigma^2 tau = 0.1 * 4 * 15 = 6 -> r = 106,
    # delta = 6 + 1.290770423 = 7.290770423
    q = model.quote(100.0, -1.0, 2.0, model.time_left(ts))
    assert q.reservation == pytest.approx(106.0, abs=1e-12)
    assert 2 * q.half_spread == pytest.approx(7.290770423, abs=1e-9)
    # a session ends at a multiple of 60 s; the next one starts with the whole horizon
    boundary = 1_700_000_040 * NS
    assert session_time_left(boundary - 1, 60.0) == pytest.approx(1e-9)
    assert model.time_left(boundary) == 60.0
    # at the session's end the inventory term vanishes: only the liquidity spread is left
    end = model.quote(100.0, 5.0, 2.0, 0.0)
    assert end.reservation == 100.0
    assert 2 * end.half_spread == pytest.approx(1.290770423, abs=1e-9)


def test_rolling_horizon_keeps_the_whole_horizon() -> None:
    model = AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=True)
    assert model.time_left(1_700_000_025 * NS) == 60.0
    assert model.time_left(1_700_000_059 * NS) == 60.0


@pytest.mark.parametrize(
    "model",
    [
        AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0),
        FixedSpread(half_spread_bps=5.0, skew_bps_per_unit=2.0),
    ],
)
def test_long_inventory_moves_both_quotes_down_and_short_up(model: object) -> None:
    assert isinstance(model, AvellanedaStoikov | FixedSpread)
    flat = model.quote(100.0, 0.0, 0.5, 60.0)
    long = model.quote(100.0, 2.0, 0.5, 60.0)
    short = model.quote(100.0, -2.0, 0.5, 60.0)
    assert long.bid < flat.bid and long.ask < flat.ask
    assert short.bid > flat.bid and short.ask > flat.ask
    # the skew does not change the width
    assert long.ask - long.bid == pytest.approx(flat.ask - flat.bid)


def test_fixed_spread_hand_computed() -> None:
    # mid 100, half spread 5 bps = 0.05; skew 2 bps per unit, q = 3 -> centre 100 * (1 - 6e-4)
    q = FixedSpread(half_spread_bps=5.0, skew_bps_per_unit=2.0).quote(100.0, 3.0, 9.9, 1.0)
    assert q.reservation == pytest.approx(99.94, abs=1e-12)
    assert q.half_spread == pytest.approx(0.05, abs=1e-12)


def test_higher_risk_aversion_skews_more() -> None:
    lo = AvellanedaStoikov(gamma=0.05, kappa=1.5, horizon_s=10).quote(100.0, 1.0, 1.0, 10.0)
    hi = AvellanedaStoikov(gamma=0.2, kappa=1.5, horizon_s=10).quote(100.0, 1.0, 1.0, 10.0)
    assert 100.0 - hi.reservation == pytest.approx(4 * (100.0 - lo.reservation))


@pytest.mark.parametrize("field", ["gamma", "kappa", "horizon_s"])
def test_model_refuses_non_positive_parameters(field: str) -> None:
    params: dict[str, Any] = {"gamma": 0.1, "kappa": 1.5, "horizon_s": 60.0, field: 0.0}
    with pytest.raises(ValueError, match=field):
        AvellanedaStoikov(**params)


def test_volatility_converges_to_the_variance_rate_of_the_path() -> None:
    # A mid that moves by 2 every 0.5 s has variance rate 2^2 / 0.5 = 8 price^2/s. Right
    # after a move the estimate sits at the top of its sawtooth, the fixed point of
    # v = exp(-l dt) v + l r^2:  v* = l r^2 / (1 - exp(-l dt)), l = ln 2 / 5 = 0.1386294,
    # 1 - exp(-0.0693147) = 0.0669670 -> v* = 0.5545177 / 0.0669670 = 8.280462.
    vol = EwmaVolatility(half_life_s=5.0)
    mid = 100.0
    for i in range(400):
        mid += 2.0 if i % 2 else -2.0
        vol.update(i * NS // 2, mid)
    assert vol.variance == pytest.approx(8.280462, rel=1e-6)
    # half a step later (mid unchanged) it is at the bottom; the two bracket 8
    vol.update(400 * NS // 2, mid)
    assert vol.variance < 8.0 < 8.280462
    assert vol.elapsed_s == pytest.approx(200.0)


def test_volatility_does_not_depend_on_how_often_an_unchanged_mid_is_sampled() -> None:
    coarse = EwmaVolatility(half_life_s=5.0)
    fine = EwmaVolatility(half_life_s=5.0)
    mid = 100.0
    for i in range(60):
        mid += 1.0 if i % 3 else -1.5
        coarse.update(i * NS, mid)
        fine.update(i * NS, mid)
        for k in (1, 2, 3):  # extra ticks at the same mid between the moves
            fine.update(i * NS + k * NS // 4, mid)
    coarse.update(60 * NS, mid)
    fine.update(60 * NS, mid)
    assert fine.sigma == pytest.approx(coarse.sigma, rel=1e-12)


def test_volatility_counts_simultaneous_moves_and_ignores_late_ticks() -> None:
    vol = EwmaVolatility(half_life_s=10.0)
    vol.update(10 * NS, 100.0)
    vol.update(10 * NS, 101.0)  # same event time: the move still counts
    assert vol.variance == pytest.approx(1.0 * math.log(2) / 10.0)
    before = vol.variance
    vol.update(9 * NS, 200.0)  # older than the last tick: ignored
    assert vol.variance == before and vol.last_mid == 101.0


def test_volatility_starts_from_the_initial_guess_and_decays() -> None:
    vol = EwmaVolatility(half_life_s=10.0, sigma_initial=3.0)
    assert vol.sigma == 3.0
    vol.update(0, 100.0)
    vol.update(10 * NS, 100.0)  # one half-life of a still mid halves the variance
    assert vol.variance == pytest.approx(4.5)
