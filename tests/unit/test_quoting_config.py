"""The quoter's TOML configuration: defaults, per-market overrides, and errors that name the
bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.operators.quoting_config import QuotingConfig, load_quoting_config

TOML = """
id_namespace = "paper-1"

[defaults]
gamma = 0.01
levels = 2

[[markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.01
lot_size = 0.00001
min_notional = 5.0
index_basket = "BTC"

[[markets]]
venue = "binance"
symbol = "ETH/USDT"
tick_size = 0.01
lot_size = 0.0001
[markets.params]
order_size = 0.02
model = "fixed_spread"
"""


def test_defaults_apply_and_markets_override_them(tmp_path: Path) -> None:
    path = tmp_path / "quoting.toml"
    path.write_text(TOML)
    cfg = load_quoting_config(path)
    btc, eth = cfg.markets
    assert cfg.id_namespace == "paper-1"
    assert cfg.params_for(btc).gamma == 0.01 and cfg.params_for(btc).levels == 2
    eth_params = cfg.params_for(eth)
    assert (eth_params.order_size, eth_params.model, eth_params.levels) == (
        0.02,
        "fixed_spread",
        2,
    )
    assert cfg.market("binance:ETH/USDT") is eth and cfg.market("okx:ETH/USDT") is None


def test_a_quoting_table_in_a_shared_file(tmp_path: Path) -> None:
    shared = "[risk]\nwindow_ms = 1000\n\n" + TOML.replace("[defaults]", "[quoting.defaults]")
    shared = shared.replace('id_namespace = "paper-1"', '[quoting]\nid_namespace = "paper-1"')
    shared = shared.replace("[[markets]]", "[[quoting.markets]]").replace(
        "[markets.params]", "[quoting.markets.params]"
    )
    path = tmp_path / "all.toml"
    path.write_text(shared)
    assert len(load_quoting_config(path).markets) == 2


def test_no_file_means_sensible_defaults() -> None:
    cfg = load_quoting_config(None)
    (m,) = cfg.markets
    p = cfg.params_for(m)
    assert m.key == "binance:BTC/USDT" and p.model == "glft"
    # the default order is tradable on the default market (Binance min notional 5 USDT)
    assert p.order_size * 20_000 > m.min_notional


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TOML.replace("gamma = 0.01", "gamma = -1.0"), "gamma"),
        (TOML.replace("levels = 2", "levls = 2"), "levls"),
        (TOML.replace("order_size = 0.02", "order_size = 'big'"), "order_size"),
        (TOML.replace('symbol = "ETH/USDT"', 'symbol = "ETHUSDT"'), "ETHUSDT"),
        (TOML.replace('symbol = "ETH/USDT"', 'symbol = "BTC/USDT"'), "twice"),
        (
            TOML.replace("tick_size = 0.01\nlot_size = 0.0001", "tick_size = 0\nlot_size = 1"),
            "tick_size",
        ),
    ],
)
def test_errors_name_the_bad_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_quoting_config(path)


def test_config_objects_are_frozen() -> None:
    cfg = QuotingConfig()
    with pytest.raises(AttributeError):
        cfg.id_namespace = "x"  # type: ignore[misc]
