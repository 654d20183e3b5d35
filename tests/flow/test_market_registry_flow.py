"""A quoter built from a configuration whose market facts are only in the ``[[markets]]``
registry quotes with the registry's tick and lot sizes (the quoting flow under run_main)."""

from __future__ import annotations

from pathlib import Path

from bytewax.testing import run_main

from makerflow.operators.quoting_config import load_quoting_config
from tests.flow.test_quoter_flow import build
from tests.quoting_support import load_ticks

CONFIG = """
[[markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.5
lot_size = 0.001
min_notional = 5.0
index_basket = "BTC"

[quoting]
id_namespace = "registry"
[quoting.defaults]
warmup_s = 0.0
sigma_initial = 4.0
order_size = 0.003
"""


def on_grid(x: float, step: float) -> bool:
    return abs(x / step - round(x / step)) < 1e-9


def test_a_registry_only_config_quotes_on_the_registry_tick(tmp_path: Path) -> None:
    p = tmp_path / "makerflow.toml"
    p.write_text(CONFIG)
    config = load_quoting_config(p)
    ticks = load_ticks(200)
    # The recording's prices are on a 0.01 tick, so a quote on it would show.
    assert not all(on_grid(t.bid, 0.5) for t in ticks)
    flow, res = build(list(ticks), config)
    run_main(flow)
    places = [i for i in res.intents if i.action == "place"]
    assert places
    for i in places:
        assert i.price is not None and i.qty is not None
        assert on_grid(i.price, 0.5), i.price
        assert on_grid(i.qty, 0.001), i.qty
