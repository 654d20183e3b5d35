"""The Avellaneda-Stoikov synthetic market (section 3.3) against hand-computed cases and the
paper's qualitative table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from makerflow.backtest.synthetic import SyntheticParams, run_synthetic, simulate
from makerflow.commands.backtest_synthetic import add_synthetic_args, run_synthetic_cli

PAPER = {"gamma": 0.1, "sigma": 2.0, "kappa": 1.5, "A": 140.0, "T": 1.0, "dt": 0.005, "s0": 100.0}


def test_mean_spread_is_the_models_spread_averaged_over_the_horizon():
    # gamma sigma^2 (T - t) averaged over t = 0, dt, ..., T - dt plus (2/gamma) ln(1 + gamma/kappa)
    out = run_synthetic(**PAPER, paths=10, seed=1)
    avg_tau = 1.0 - 0.005 * (200 - 1) / 2
    expected = 0.1 * 4.0 * avg_tau + (2 / 0.1) * math.log(1 + 0.1 / 1.5)
    assert out["inventory"]["mean_spread"] == pytest.approx(expected, rel=1e-12)
    assert out["symmetric"]["mean_spread"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1.49, abs=0.005)  # the paper's table


def test_when_every_quote_fills_the_profit_is_the_sum_of_the_spreads():
    # A dt exp(-kappa delta) >= 1 on both sides: one buy and one sell each step, q stays 0 and
    # each step earns exactly the total spread, whatever the mid does.
    p = SyntheticParams(**{**PAPER, "A": 1e9}, paths=50, seed=3)
    res = simulate(p)
    for name in ("inventory", "symmetric"):
        assert np.all(res[name].final_q == 0)
        assert np.all(res[name].fills == 2 * p.steps)
        np.testing.assert_allclose(res[name].profit, p.steps * res[name].mean_spread, rtol=1e-9)


def test_without_fills_nothing_is_earned():
    res = run_synthetic(**{**PAPER, "A": 1e-12}, paths=20, seed=0)
    for name in ("inventory", "symmetric"):
        assert res[name]["mean_profit"] == 0.0
        assert res[name]["std_final_q"] == 0.0


def test_inventory_held_from_the_start_is_marked_at_the_final_mid():
    # No fills, q0 = 3: profit is 3 * S_T, and S_T is s0 plus a +/- sigma sqrt(dt) walk.
    p = SyntheticParams(**{**PAPER, "A": 1e-12}, paths=400, seed=5, q0=3)
    res = simulate(p)["inventory"]
    final_mid = res.profit / 3
    steps_up = (final_mid - 100.0) / (2.0 * math.sqrt(0.005))
    np.testing.assert_allclose(steps_up, np.round(steps_up), atol=1e-6)  # on the lattice
    assert final_mid.std() == pytest.approx(2.0, rel=0.15)  # sigma sqrt(T)


def test_paper_table_inventory_strategy_has_lower_dispersion():
    # Avellaneda & Stoikov (2008) table for gamma = 0.1 (1000 paths): inventory strategy profit
    # 62.94 +/- 5.89, final q std 2.80; symmetric 67.21 +/- 13.43, final q std 8.66.
    out = run_synthetic(**PAPER, paths=1000, seed=7)
    inv, sym = out["inventory"], out["symmetric"]
    assert inv["std_profit"] < 0.6 * sym["std_profit"]
    assert inv["std_final_q"] < 0.5 * sym["std_final_q"]
    assert inv["mean_profit"] < sym["mean_profit"]  # the price of lower risk
    assert 55 < inv["mean_profit"] < 72 and 60 < sym["mean_profit"] < 75
    assert 4 < inv["std_profit"] < 9 and 11 < sym["std_profit"] < 16
    assert 2 < inv["std_final_q"] < 4 and 7 < sym["std_final_q"] < 10
    assert abs(inv["mean_final_q"]) < 0.5


def test_seeded_runs_repeat_and_seeds_differ():
    a = run_synthetic(**PAPER, paths=200, seed=11)
    assert a == run_synthetic(**PAPER, paths=200, seed=11)
    assert a != run_synthetic(**PAPER, paths=200, seed=12)


@pytest.mark.parametrize("bad", [{"sigma": 0.0}, {"dt": 2.0}, {"paths": 1}, {"A": -1.0}])
def test_bad_parameters_are_refused_with_the_reason(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        run_synthetic(**{**PAPER, "paths": 10, **bad})


def test_cli_prints_one_json_object(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_synthetic_args(parser)
    args = parser.parse_args(["--paths", "50", "--seed", "2", "--gamma", "0.1", "--json"])
    assert run_synthetic_cli(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == run_synthetic(**PAPER, paths=50, seed=2)
    assert set(printed) == {"inventory", "symmetric"}
    for side in printed.values():
        assert {"mean_profit", "std_profit", "mean_final_q", "std_final_q", "mean_spread"} <= set(
            side
        )
