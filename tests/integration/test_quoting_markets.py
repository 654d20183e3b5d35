"""Market rules for the quoter read through the unmodified ccxt client from the local
exchange: ``makerflow quoting-markets`` prints TOML the quoter loads, with the exchange's
tick, lot and minimum notional, and the quoter rounds quantities as ccxt does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from makerflow.cli import main
from makerflow.exchange import BTCUSDT, ETHUSDT, LocalExchange
from makerflow.operators.ladder import MarketSpec, from_ccxt_market
from makerflow.operators.quoting_config import load_quoting_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exchange():
    with LocalExchange(markets=(BTCUSDT, ETHUSDT), speed=0) as ex:
        yield ex


def test_quoting_markets_command_writes_a_config_the_quoter_loads(
    exchange, capsys, tmp_path: Path
) -> None:
    code = main(["quoting-markets", "--url", exchange.url, "BTC/USDT", "ETH/USDT"])
    assert code == 0
    path = tmp_path / "quoting.toml"
    path.write_text(capsys.readouterr().out)
    btc, eth = load_quoting_config(path).markets
    assert (btc.key, btc.tick_size, btc.lot_size, btc.min_qty, btc.min_notional) == (
        "binance:BTC/USDT",
        0.01,
        0.00001,
        0.00001,
        5.0,
    )
    assert (eth.key, eth.tick_size, eth.lot_size, eth.min_notional) == (
        "binance:ETH/USDT",
        0.01,
        0.0001,
        5.0,
    )


def test_unknown_symbol_is_an_error(exchange, capsys) -> None:
    assert main(["quoting-markets", "--url", exchange.url, "DOGE/USDT"]) == 1
    assert "DOGE/USDT" in capsys.readouterr().err


def test_quantities_round_as_ccxt_rounds_them(exchange) -> None:
    async def go() -> tuple[MarketSpec, list[tuple[float, float]]]:
        client = exchange.client()
        try:
            await client.load_markets()
            spec = from_ccxt_market(client.market("BTC/USDT"), client.precisionMode)
            amounts = [0.0012345, 0.1 + 0.2, 1.000009, 0.7 * 3, 2.5e-05, 123.456789]
            return spec, [(a, float(client.amount_to_precision("BTC/USDT", a))) for a in amounts]
        finally:
            await client.close()

    spec, pairs = asyncio.run(go())
    assert spec == MarketSpec(tick_size=0.01, lot_size=0.00001, min_qty=0.00001, min_notional=5.0)
    for amount, by_ccxt in pairs:
        assert spec.qty_down(amount) == by_ccxt, amount
