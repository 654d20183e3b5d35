"""Quoting models against numbers worked out by hand from the Avellaneda-Stoikov formulas

    r = s - q * gamma * sigma^2 * (T - t)
    delta_total = Delta gamma sigma^2 (T - t) + (2 / (gamma Delta)) ln(1 + gamma Delta / kappa)

(order size ``Delta`` = 1 unless said), the GLFT closed form, and against what a user expects
of an inventory skew."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from makerflow.operators.intensity import Intensity
from makerflow.operators.quoting_models import (
    AvellanedaStoikov,
    FixedSpread,
    Glft,
    as_reservation_price,
    as_total_spread,
    glft_coefficients,
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


def test_finite_horizon_runs_down_to_the_session_end() -> None:
    end = 1_700_000_040 * NS
    model = AvellanedaStoikov(
        gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=False, session_end_ns=end
    )
    ts = 1_700_000_025 * NS  # 15 s before the end
    assert model.time_left(ts) == 15.0
    # with s = 100, q = -1, sigma = 2: gamma sigma^2 tau = 0.1 * 4 * 15 = 6 -> r = 106,
    # delta = 6 + 1.290770423 = 7.290770423
    q = model.quote(100.0, -1.0, 2.0, model.time_left(ts))
    assert q.reservation == pytest.approx(106.0, abs=1e-12)
    assert 2 * q.half_spread == pytest.approx(7.290770423, abs=1e-9)
    # at and after the end the inventory term is gone: only the liquidity spread is left
    assert model.time_left(end) == 0.0 and model.time_left(end + 90 * NS) == 0.0
    last = model.quote(100.0, 5.0, 2.0, 0.0)
    assert last.reservation == 100.0
    assert 2 * last.half_spread == pytest.approx(1.290770423, abs=1e-9)


def test_finite_horizon_does_not_restart_every_horizon() -> None:
    # Found on main: rolling=False restarted the horizon at every multiple of horizon_s
    # since the epoch, so the skew fell to zero and jumped back each minute (a saw-tooth).
    end = 1_700_003_600 * NS  # trading ends in an hour
    model = AvellanedaStoikov(
        gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=False, session_end_ns=end
    )
    skews = [
        100.0 - model.quote(100.0, 1.0, 2.0, model.time_left(end - s * NS)).reservation
        for s in range(3600, 0, -7)
    ]
    assert all(b < a for a, b in itertools.pairwise(skews))  # runs down, never resets
    with pytest.raises(ValueError, match="session_end_ns"):
        AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=False).time_left(end)


def test_rolling_horizon_keeps_the_whole_horizon() -> None:
    model = AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0, rolling=True)
    assert model.time_left(1_700_000_025 * NS) == 60.0
    assert model.time_left(1_700_000_059 * NS) == 60.0


@pytest.mark.parametrize(
    "model",
    [
        AvellanedaStoikov(gamma=0.1, kappa=1.5, horizon_s=60.0),
        Glft(gamma=0.1, a=2.0, kappa=1.5, order_size=1.0),
        FixedSpread(half_spread_bps=5.0, skew_bps_per_unit=2.0),
    ],
)
def test_long_inventory_moves_both_quotes_down_and_short_up(model: object) -> None:
    assert isinstance(model, AvellanedaStoikov | Glft | FixedSpread)
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


def test_order_size_enters_the_spread_and_gamma_keeps_its_meaning() -> None:
    # Inventory in base units: with orders of Delta = 0.1 the reservation moves by
    # q gamma sigma^2 tau = 0.2 * 1.0 * 0.25 * 10 = 0.5; the spread is
    # Delta gamma sigma^2 tau + (2/(gamma Delta)) ln(1 + gamma Delta/kappa)
    # = 0.1 * 2.5 + 20 ln(16/15) = 0.25 + 1.290770423
    small = AvellanedaStoikov(gamma=1.0, kappa=1.5, horizon_s=10.0, order_size=0.1)
    q = small.quote(100.0, 0.2, 0.5, 10.0)
    assert q.reservation == pytest.approx(99.5, abs=1e-12)
    assert 2 * q.half_spread == pytest.approx(1.540770423, abs=1e-9)
    # twice the order size: the same inventory skews the same (gamma unchanged)
    big = AvellanedaStoikov(gamma=1.0, kappa=1.5, horizon_s=10.0, order_size=0.2)
    assert big.quote(100.0, 0.2, 0.5, 10.0).reservation == pytest.approx(99.5, abs=1e-12)


def test_glft_quotes_match_hand_computed_values() -> None:
    # gamma = 3 /USDT, A = 6 /s, kappa = 0.3 /USDT, Delta = 0.001 BTC, sigma = 5 USDT/sqrt(s)
    # x = gamma Delta / kappa = 0.01
    # c1 = ln(1.01) / 0.003 = 0.00995033085 / 0.003 = 3.316776951
    # (1 + x)^(1/x + 1) = 1.01^101 = e^(101 * 0.00995033085) = e^1.004983416 = 2.731861968
    # c2 = sqrt(3 / (2 * 6 * 0.001 * 0.3) * 2.731861968) = sqrt(833.333 * 2.731862) = 47.713223
    # sigma c2 = 238.566115 USDT per BTC; half spread c1 + Delta sigma c2 / 2 = 3.436060008
    c1, c2 = glft_coefficients(3.0, 6.0, 0.3, 0.001)
    assert c1 == pytest.approx(3.316776951, abs=1e-8)
    assert c2 == pytest.approx(47.713223, abs=1e-5)
    model = Glft(gamma=3.0, a=6.0, kappa=0.3, order_size=0.001)
    flat = model.quote(60_000.0, 0.0, 5.0, math.inf)
    assert flat.reservation == 60_000.0
    assert flat.half_spread == pytest.approx(3.436060008, abs=1e-8)
    # long 0.004 BTC: bid depth c1 + (2q + Delta)/2 sigma c2 = 3.316777 + 0.0045 * 238.566115
    # = 4.390324466, ask depth c1 - (2q - Delta)/2 sigma c2 = 3.316777 - 0.0035 * 238.566115
    # = 2.481795550
    long = model.quote(60_000.0, 0.004, 5.0, math.inf)
    assert 60_000.0 - long.bid == pytest.approx(4.390324466, abs=1e-8)
    assert long.ask - 60_000.0 == pytest.approx(2.481795550, abs=1e-8)
    assert model.time_left(0) == math.inf


def test_glft_takes_the_estimated_intensity_over_its_fallback() -> None:
    fallback = Glft(gamma=3.0, a=1.0, kappa=1.0, order_size=0.001)
    fitted = Glft(gamma=3.0, a=6.0, kappa=0.3, order_size=0.001)
    got = fallback.quote(60_000.0, 0.004, 5.0, math.inf, Intensity(a=6.0, kappa=0.3))
    assert got == fitted.quote(60_000.0, 0.004, 5.0, math.inf)
    # thinner liquidity (higher kappa) -> tighter; more arrivals (higher A) -> less skew
    assert fallback.quote(1.0e4, 0.0, 5.0, 0.0).half_spread < got.half_spread
    skew_lo_a = (
        60_000.0
        - Glft(gamma=3.0, a=2.0, kappa=0.3, order_size=0.001)
        .quote(60_000.0, 0.004, 5.0, 0.0)
        .reservation
    )
    assert skew_lo_a > 60_000.0 - got.reservation


@pytest.mark.parametrize("field", ["gamma", "a", "kappa", "order_size"])
def test_glft_refuses_non_positive_parameters(field: str) -> None:
    params: dict[str, Any] = {"gamma": 3.0, "a": 6.0, "kappa": 0.3, "order_size": 0.001}
    with pytest.raises(ValueError, match=field):
        Glft(**{**params, field: 0.0})
