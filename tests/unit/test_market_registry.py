"""The market registry: a file's top-level ``[[markets]]`` is configured once and drives
quoting, risk, the private stream's symbols and the risk gate; a service entry that restates
a fact must agree with it, and one naming a market it does not have is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.backtest.engine import MarketEngine
from makerflow.backtest.settings import load_backtest_config
from makerflow.flows.all_in_one import load_service_config
from makerflow.flows.config_file import check_config
from makerflow.flows.execution import ExecutionConfig
from makerflow.flows.reconcile import ReconFlowConfig
from makerflow.operators.quoting_config import QuotingConfig, load_quoting_config
from makerflow.operators.risk_limits import RiskConfig
from makerflow.schemas.config import ConfigError, load_section
from makerflow.schemas.markets import Market, MarketRegistry

REGISTRY = """
[[markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.5
lot_size = 0.001
min_qty = 0.001
min_notional = 10.0
maker_fee_bps = 2.0
taker_fee_bps = 4.0
index_basket = "BTC"

[[markets]]
venue = "binance"
symbol = "ETH/USDT"
tick_size = 0.05
lot_size = 0.01
index_basket = "ETH"

[[markets]]
venue = "kraken"
symbol = "BTC/USD"
tick_size = 0.1
lot_size = 0.0001
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "makerflow.toml"
    p.write_text(text)
    return p


def test_registry_lookups() -> None:
    btc = Market(venue="binance", symbol="BTC/USDT", tick_size=0.01, lot_size=0.001)
    krk = Market(venue="kraken", symbol="BTC/USD", account="b", tick_size=0.1, lot_size=0.1)
    reg = MarketRegistry(markets=(btc, krk))
    assert reg["binance:BTC/USDT"] is btc
    assert reg.get("binance:ETH/USDT") is None
    assert reg.of("kraken") == (krk,)
    assert reg.of("kraken", "main") == ()
    assert reg.symbols("binance") == ("BTC/USDT",)
    with pytest.raises(KeyError, match="not in the registry"):
        reg["binance:ETH/USDT"]


def test_registry_alone_drives_quoting_risk_private_stream_and_gate(tmp_path: Path) -> None:
    p = write(tmp_path, REGISTRY + '\n[quoting]\nid_namespace = "r"\n[risk]\nwindow_ms = 60000\n')
    quoting = load_quoting_config(p)
    btc = quoting.market("binance:BTC/USDT")
    assert btc is not None
    assert (btc.tick_size, btc.lot_size, btc.min_qty, btc.min_notional) == (0.5, 0.001, 0.001, 10)
    assert btc.index_basket == "BTC"
    assert quoting.params_for(btc).maker_fee_bps == 2.0  # the registry's fee tier
    assert [m.key for m in quoting.markets] == [
        "binance:BTC/USDT",
        "binance:ETH/USDT",
        "kraken:BTC/USD",
    ]
    risk = load_section(p, "risk", RiskConfig, env={})
    assert [(m.key, m.index_basket) for m in risk.markets] == [
        ("binance:BTC/USDT", "BTC"),
        ("binance:ETH/USDT", "ETH"),
        ("kraken:BTC/USD", None),
    ]
    execution = load_section(p, "execution", ExecutionConfig, env={})
    assert execution.private.symbols == ("BTC/USDT", "ETH/USDT")  # binance, account main
    assert execution.gate_config().markets == ("binance:BTC/USDT", "binance:ETH/USDT")
    recon = load_section(p, "reconcile", ReconFlowConfig, env={})
    assert recon.exchange.symbols == ("BTC/USDT", "ETH/USDT")


def test_service_entries_name_a_registry_market_and_keep_their_own_settings(
    tmp_path: Path,
) -> None:
    text = (
        REGISTRY
        + """
[quoting]
[[quoting.markets]]
market = "binance:ETH/USDT"
initial_inventory = 2.0
[quoting.markets.params]
order_size = 0.1

[risk]
[[risk.markets]]
venue = "binance"
symbol = "BTC/USDT"
[risk.markets.limits]
max_position = 1.0

[execution.sink]
venue = "binance"
"""
    )
    p = write(tmp_path, text)
    configs = check_config(p, "quoter", env={})
    quoting = configs["quoting"]
    assert isinstance(quoting, QuotingConfig)
    (eth,) = quoting.markets
    assert (eth.key, eth.tick_size, eth.lot_size, eth.initial_inventory) == (
        "binance:ETH/USDT",
        0.05,
        0.01,
        2.0,
    )
    assert quoting.params_for(eth).order_size == 0.1
    risk = configs["risk"]
    assert isinstance(risk, RiskConfig)
    (rb,) = risk.markets
    assert (rb.key, rb.index_basket, rb.limits.max_position) == ("binance:BTC/USDT", "BTC", 1.0)
    execution = configs["execution"]
    assert isinstance(execution, ExecutionConfig)
    assert execution.private.symbols == ("BTC/USDT", "ETH/USDT")


def test_the_private_stream_watches_the_registry_markets_of_its_venue(tmp_path: Path) -> None:
    p = write(tmp_path, REGISTRY + '[execution.private]\nvenue = "kraken"\n')
    execution = load_section(p, "execution", ExecutionConfig, env={})
    assert execution.private.symbols == ("BTC/USD",)


def test_a_restated_fact_that_agrees_is_accepted(tmp_path: Path) -> None:
    text = REGISTRY + (
        '[quoting]\n[[quoting.markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\n'
        'tick_size = 0.5\nlot_size = 0.001\nindex_basket = "BTC"\n'
    )
    (btc,) = load_quoting_config(write(tmp_path, text)).markets
    assert btc.tick_size == 0.5


@pytest.mark.parametrize(
    ("tail", "env", "message"),
    [
        (
            '[quoting]\n[[quoting.markets]]\nmarket = "binance:BTC/USDT"\ntick_size = 0.01\n',
            {},
            "[quoting] markets[0].tick_size: 0.01 disagrees with the [[markets]] registry's"
            " binance:BTC/USDT tick_size = 0.5",
        ),
        (
            '[risk]\n[[risk.markets]]\nmarket = "binance:BTC/USDT"\nindex_basket = "ETH"\n',
            {},
            "[risk] markets[0].index_basket: 'ETH' disagrees",
        ),
        (
            '[risk]\n[[risk.markets]]\nvenue = "binance"\nsymbol = "SOL/USDT"\n',
            {},
            "[risk] markets[0]: market binance:SOL/USDT is not in the [[markets]] registry",
        ),
        (
            '[quoting]\n[[quoting.markets]]\nmarket = "okx:BTC/USDT"\n',
            {},
            "[quoting] markets[0]: market okx:BTC/USDT is not in the [[markets]] registry",
        ),
        (
            '[quoting]\nid_namespace = "x"\n',
            {"MAKERFLOW__QUOTING__MARKETS__1__LOT_SIZE": "0.5"},
            "[quoting] markets[1].lot_size: 0.5 disagrees",
        ),
        (
            '[[markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\ntick_size = 1\n'
            "lot_size = 1\n[ticks]\n",
            {},
            "[[markets]] (the market registry): market binance:BTC/USDT is in the registry twice",
        ),
        (
            "[index]\nmin_venues = 1\n[[index.baskets]]\nname = 'BTC'\nquote = 'USDT'\n"
            "[[index.baskets.assets]]\nasset = 'BTC'\n",
            {},
            "[[markets]] markets[1] (binance:ETH/USDT): index_basket 'ETH' is missing from"
            " [index] baskets",
        ),
    ],
)
def test_disagreeing_facts_and_unknown_markets_are_config_errors(
    tmp_path: Path, tail: str, env: dict[str, str], message: str
) -> None:
    p = write(tmp_path, REGISTRY + tail)
    with pytest.raises(ConfigError) as exc:
        check_config(p, "quoter", env=env)
    assert str(p) in str(exc.value)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("tick_size = 0\nlot_size = 1\n", "tick_size of binance:BTC/USDT must be > 0"),
        ("tick_size = 1\nlot_size = -1\n", "lot_size of binance:BTC/USDT must be > 0"),
    ],
)
def test_registry_rules_are_validated(tmp_path: Path, entry: str, message: str) -> None:
    text = f'[[markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\n{entry}[ticks]\n'
    with pytest.raises(ConfigError, match=message):
        load_quoting_config(write(tmp_path, text))


def test_a_registry_that_is_not_an_array_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected an array of tables"):
        load_quoting_config(write(tmp_path, 'markets = "BTC/USDT"\n[ticks]\n'))


def test_a_symbol_that_is_not_base_quote_is_refused(tmp_path: Path) -> None:
    text = (
        '[[markets]]\nvenue = "binance"\nsymbol = "BTCUSDT"\ntick_size = 1\nlot_size = 1\n[ticks]\n'
    )
    with pytest.raises(ConfigError, match=r"\[\[markets\]\]"):
        load_quoting_config(write(tmp_path, text))


def test_the_backtest_takes_its_market_rules_from_the_registry(tmp_path: Path) -> None:
    p = write(tmp_path, REGISTRY + "[quoting]\n[[quoting.markets]]\nmarket = 'binance:BTC/USDT'\n")
    cfg = load_backtest_config(p)
    (btc,) = cfg.quoting.markets
    assert (btc.tick_size, btc.min_notional) == (0.5, 10.0)
    assert [m.key for m in cfg.risk.markets] == [
        "binance:BTC/USDT",
        "binance:ETH/USDT",
        "kraken:BTC/USD",
    ]


def test_a_file_without_a_registry_keeps_the_older_form(tmp_path: Path) -> None:
    text = (
        '[quoting]\n[[quoting.markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\n'
        "tick_size = 0.01\nlot_size = 0.00001\n"
    )
    (btc,) = load_quoting_config(write(tmp_path, text)).markets
    assert btc.tick_size == 0.01


def test_the_environment_overrides_a_registry_fact_for_every_service(tmp_path: Path) -> None:
    p = write(tmp_path, REGISTRY + '[quoting]\nid_namespace = "r"\n')
    env = {"MAKERFLOW__MARKETS__1__TICK_SIZE": "0.25"}
    configs = check_config(p, "quoter", env=env)
    quoting = configs["quoting"]
    assert isinstance(quoting, QuotingConfig)
    eth = quoting.market("binance:ETH/USDT")
    assert eth is not None and eth.tick_size == 0.25
    assert load_section(p, "quoting", QuotingConfig, env=env) == quoting
    with pytest.raises(ConfigError, match="MAKERFLOW__MARKETS__7__TICK_SIZE"):
        load_section(p, "quoting", QuotingConfig, env={"MAKERFLOW__MARKETS__7__TICK_SIZE": "1"})


def test_the_all_in_one_pipeline_takes_its_markets_from_the_registry(tmp_path: Path) -> None:
    text = REGISTRY + (
        "[all_in_one]\nexecute = true\n[[all_in_one.quoting.markets]]\n"
        'market = "binance:BTC/USDT"\n[all_in_one.quoting.markets.params]\norder_size = 0.01\n'
    )
    cfg = load_service_config(str(write(tmp_path, text)), env={})
    (btc,) = cfg.quoting.markets
    assert (btc.tick_size, btc.lot_size, cfg.quoting.params_for(btc).order_size) == (
        0.5,
        0.001,
        0.01,
    )
    # The gate's markets default to risk's, which default to the registry's.
    assert [m.key for m in cfg.risk.markets] == [
        "binance:BTC/USDT",
        "binance:ETH/USDT",
        "kraken:BTC/USD",
    ]
    bad = text.replace('market = "binance:BTC/USDT"', 'market = "binance:BTC/EUR"')
    with pytest.raises(ConfigError, match=r"\[all_in_one.quoting\] markets\[0\]: market"):
        load_service_config(str(write(tmp_path, bad)), env={})


def test_the_backtest_venue_charges_the_registry_fees(tmp_path: Path) -> None:
    p = write(tmp_path, REGISTRY + "[quoting]\n[[quoting.markets]]\nmarket = 'binance:BTC/USDT'\n")
    engine = MarketEngine("binance:BTC/USDT", load_backtest_config(p))
    assert engine.venue.config.maker_fee == pytest.approx(2.0 / 1e4)
    assert engine.venue.config.taker_rate == pytest.approx(4.0 / 1e4)
    # A venue table that states a fee keeps it; without one and without a registry fee,
    # the taker pays the simulated venue's default.
    stated = load_backtest_config(p, overrides=[("venue.taker_fee", 0.001)])
    assert MarketEngine("binance:BTC/USDT", stated).venue.config.taker_rate == 0.001
    eth = load_backtest_config(p, overrides=[("quoting.markets", [{"market": "binance:ETH/USDT"}])])
    assert MarketEngine("binance:ETH/USDT", eth).venue.config.taker_rate == 0.0005
