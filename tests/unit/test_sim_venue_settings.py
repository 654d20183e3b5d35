"""A backtest's settings: the services' TOML tables, ``--param`` overrides, sweep grids."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.backtest.settings import grid, label, load_backtest_config, parse_param


def test_the_services_tables_are_read_and_other_tables_left_alone(tmp_path: Path) -> None:
    f = tmp_path / "desk.toml"
    f.write_text(
        """
[quoting]
id_namespace = "bt"
[quoting.defaults]
gamma = 0.02
[[quoting.markets]]
venue = "binance"
symbol = "ETH/USDT"
tick_size = 0.01
lot_size = 0.0001
[risk]
window_ms = 30000
slide_ms = 5000
[venue]
entry_latency_ms = 3.5
queue_model = "risk_averse"
[exchange]
url = "http://not-the-backtests"
"""
    )
    cfg = load_backtest_config(f, [("quoting.defaults.kappa", 0.7), ("venue.seed", 9)])
    assert cfg.quoting.id_namespace == "bt" and cfg.quoting.markets[0].symbol == "ETH/USDT"
    assert (cfg.quoting.defaults.gamma, cfg.quoting.defaults.kappa) == (0.02, 0.7)
    assert cfg.risk.window_ms == 30000
    assert (cfg.venue.entry_latency_ms, cfg.venue.queue_model, cfg.venue.seed) == (
        3.5,
        "risk_averse",
        9,
    )


def test_params_are_toml_values_and_quoting_fields_may_leave_out_defaults() -> None:
    assert parse_param("quoting.gamma=0.05") == ("quoting.defaults.gamma", [0.05])
    assert parse_param("quoting.post_only=false") == ("quoting.defaults.post_only", [False])
    assert parse_param("venue.queue_model=front") == ("venue.queue_model", ["front"])
    assert parse_param("venue.entry_latency_samples_ms=[1, 2.5, 9]") == (
        "venue.entry_latency_samples_ms",
        [[1, 2.5, 9]],
    )
    assert parse_param("quoting.id_namespace=x") == ("quoting.id_namespace", ["x"])
    with pytest.raises(ValueError, match="unknown section"):
        parse_param("exchange.url=x")
    with pytest.raises(ValueError, match=r"section\.key=value"):
        parse_param("gamma")


def test_several_values_make_a_grid() -> None:
    params = ["quoting.gamma=0.01,0.05,0.1", "venue.seed=1,2", "quoting.levels=2"]
    combos = grid(params)
    assert len(combos) == 6
    assert combos[0] == (
        ("quoting.defaults.gamma", 0.01),
        ("venue.seed", 1),
        ("quoting.defaults.levels", 2),
    )
    assert label(combos[-1], params) == "gamma=0.1,seed=2"
    assert grid([]) == [()]


def test_a_bad_value_names_the_field() -> None:
    with pytest.raises(ValueError, match="gamma"):
        load_backtest_config(None, [("quoting.defaults.gamma", -1.0)])
    with pytest.raises(ValueError, match="queue_model"):
        load_backtest_config(None, [("venue.queue_model", "fifo")])
