"""The unmodified ccxt binance client (async and ccxt.pro) against the local exchange."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import aiohttp
import ccxt.async_support as ccxt
import pytest

from makerflow.exchange import LocalExchange, ccxt_client
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"


@pytest.fixture
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)  # the first top of book: 61837.63 / 61837.64
        yield ex


def run(coro):
    return asyncio.run(coro)


async def _with(client, fn):
    try:
        return await fn(client)
    finally:
        await client.close()


def test_markets_book_and_balance_load(exchange):
    async def go(c):
        markets = await c.load_markets()
        book = await c.fetch_order_book("BTC/USDT")
        bal = await c.fetch_balance()
        return markets["BTC/USDT"], book, bal

    market, book, bal = run(_with(exchange.client(), go))
    assert market["precision"]["price"] == 0.01
    assert market["precision"]["amount"] == 0.00001
    assert market["limits"]["cost"]["min"] == 5.0
    assert book["bids"][0] == [61837.63, 3.78826]
    assert book["asks"][0] == [61837.64, 1.54698]
    assert bal["free"]["USDT"] == 100_000.0
    assert bal["BTC"]["total"] == 2.0


def test_create_fetch_cancel_with_client_order_id(exchange):
    async def go(c):
        await c.load_markets()
        o = await c.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"clientOrderId": "q-1"})
        held = (await c.fetch_balance())["used"]["USDT"]
        opened = await c.fetch_open_orders("BTC/USDT")
        by_cid = await c.fetch_order(None, "BTC/USDT", {"clientOrderId": "q-1"})
        canceled = await c.cancel_order(None, "BTC/USDT", {"clientOrderId": "q-1"})
        after = await c.fetch_balance()
        return o, held, opened, by_cid, canceled, after, await c.fetch_orders("BTC/USDT")

    o, held, opened, by_cid, canceled, after, orders = run(_with(exchange.client(), go))
    assert o["clientOrderId"] == "q-1" and o["status"] == "open"
    assert held == pytest.approx(610.0)
    assert [x["clientOrderId"] for x in opened] == ["q-1"]
    assert by_cid["id"] == o["id"]
    assert canceled["status"] == "canceled"
    assert after["used"]["USDT"] == 0.0 and after["free"]["USDT"] == 100_000.0
    assert [(x["clientOrderId"], x["status"]) for x in orders] == [("q-1", "canceled")]


def test_taker_order_fills_with_fee_and_shows_in_my_trades(exchange):
    async def go(c):
        await c.load_markets()
        o = await c.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": "t-1"})
        return o, await c.fetch_my_trades("BTC/USDT"), await c.fetch_balance()

    o, trades, bal = run(_with(exchange.client(), go))
    assert o["status"] == "closed" and o["filled"] == 0.1
    assert len(trades) == 1
    t = trades[0]
    assert (t["side"], t["price"], t["amount"], t["takerOrMaker"]) == (
        "buy",
        61837.64,
        0.1,
        "taker",
    )
    assert t["fee"] == {"currency": "BTC", "cost": pytest.approx(0.0001)}
    assert bal["total"]["BTC"] == pytest.approx(2.0999)
    assert bal["total"]["USDT"] == pytest.approx(100_000 - 6183.764)


def test_exchange_rejections_map_to_ccxt_errors(exchange):
    async def go(c):
        await c.load_markets()
        errors = {}
        await c.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"clientOrderId": "d-1"})
        for name, call in {
            "duplicate": lambda: c.create_order(
                "BTC/USDT", "limit", "buy", 0.01, 61000, {"clientOrderId": "d-1"}
            ),
            "funds": lambda: c.create_order("BTC/USDT", "limit", "buy", 5, 61000),
            "post_only": lambda: c.create_order(
                "BTC/USDT", "limit", "buy", 0.01, 61900, {"postOnly": True}
            ),
            "tick": lambda: c.privatePostOrder(
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.01",
                    "price": "61000.005",
                }
            ),
            "lot": lambda: c.privatePostOrder(
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.000001",
                    "price": "61000",
                }
            ),
            "notional": lambda: c.create_order("BTC/USDT", "limit", "buy", 0.00005, 61000),
            "unknown": lambda: c.cancel_order(None, "BTC/USDT", {"clientOrderId": "nope"}),
        }.items():
            try:
                await call()
            except ccxt.BaseError as exc:
                errors[name] = exc
        return errors, await c.fetch_orders("BTC/USDT")

    errors, orders = run(_with(exchange.client(), go))
    assert isinstance(errors["duplicate"], ccxt.InvalidOrder)
    assert isinstance(errors["funds"], ccxt.InsufficientFunds)
    assert isinstance(errors["post_only"], ccxt.OrderImmediatelyFillable)
    assert isinstance(errors["tick"], ccxt.InvalidOrder) and "PRICE_FILTER" in str(errors["tick"])
    assert isinstance(errors["lot"], ccxt.InvalidOrder) and "LOT_SIZE" in str(errors["lot"])
    assert "NOTIONAL" in str(errors["notional"])
    assert isinstance(errors["unknown"], ccxt.OrderNotFound)
    assert [o["clientOrderId"] for o in orders] == ["d-1"]


def test_wrong_keys_are_rejected(exchange):
    async def attempt(**kw):
        c = ccxt_client(exchange.url, **kw)
        try:
            await c.fetch_balance()
        finally:
            await c.close()

    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        run(attempt(secret="not-the-secret"))
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        run(attempt(api_key="someone-else"))


def test_injected_faults_surface_as_ccxt_errors(exchange):
    exchange.inject("rate_limit", path="/api/v3/account")
    exchange.inject("unavailable", path="/api/v3/account")
    exchange.inject("server_error", path="/api/v3/account")
    exchange.inject("timeout", path="/api/v3/account", delay_s=1.0)

    async def go(c):
        await c.load_markets()
        seen = []
        for _ in range(5):
            try:
                await c.fetch_balance()
                seen.append("ok")
            except ccxt.BaseError as exc:
                seen.append(type(exc).__name__)
        return seen

    seen = run(_with(exchange.client(timeout=300), go))
    assert seen[0] in ("DDoSProtection", "RateLimitExceeded")
    assert seen[1:] == ["ExchangeNotAvailable", "ExchangeNotAvailable", "RequestTimeout", "ok"]


def test_resting_quote_is_filled_by_replayed_market_flow():
    """A bid a few ticks under the market fills as maker once replayed sellers trade down."""
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)

        async def go(c):
            await c.load_markets()
            await c.create_order(
                "BTC/USDT",
                "limit",
                "buy",
                0.002,
                61837.00,
                {"clientOrderId": "mm-1", "postOnly": True},
            )
            for _ in range(60):
                if ex.advance(100) == 0:
                    break
                o = await c.fetch_order(None, "BTC/USDT", {"clientOrderId": "mm-1"})
                if o["status"] == "closed":
                    break
            return o, await c.fetch_my_trades("BTC/USDT"), await c.fetch_balance()

        order, trades, bal = run(_with(ex.client(), go))
    assert order["status"] == "closed" and order["filled"] == 0.002
    assert all(t["takerOrMaker"] == "maker" and t["price"] == 61837.00 for t in trades)
    assert sum(t["amount"] for t in trades) == pytest.approx(0.002)
    assert bal["total"]["BTC"] == pytest.approx(2 + 0.002 * 0.999)
    assert bal["total"]["USDT"] == pytest.approx(100_000 - 0.002 * 61837.00)


def test_pro_watch_orders_and_my_trades(exchange):
    async def go():
        pro, rest = exchange.client(pro=True), exchange.client()
        try:
            await pro.load_markets()
            await rest.load_markets()
            orders = asyncio.ensure_future(pro.watch_orders("BTC/USDT"))
            await asyncio.sleep(0.2)
            await rest.create_order(
                "BTC/USDT", "limit", "sell", 0.01, 62000, {"clientOrderId": "w-1"}
            )
            got_orders = await asyncio.wait_for(orders, 5)
            trades = asyncio.ensure_future(pro.watch_my_trades("BTC/USDT"))
            await asyncio.sleep(0.2)
            await rest.create_order(
                "BTC/USDT", "market", "sell", 0.01, None, {"clientOrderId": "w-2"}
            )
            got_trades = await asyncio.wait_for(trades, 5)
            return got_orders, got_trades
        finally:
            await pro.close()
            await rest.close()

    orders, trades = run(go())
    assert [(o["clientOrderId"], o["status"], o["price"]) for o in orders] == [
        ("w-1", "open", 62000.0)
    ]
    assert [(t["side"], t["price"], t["amount"], t["takerOrMaker"]) for t in trades] == [
        ("sell", 61837.63, 0.01, "taker")
    ]
    assert trades[0]["fee"]["currency"] == "USDT"


def test_engine_clock_is_the_replayed_event_time(exchange):
    assert exchange.call(lambda s: s.engine.time_ms) == 1723161254087


def test_makerflow_exchange_command_serves_ccxt(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("cmd-secret\n")
    env = os.environ | {"MAKERFLOW_EXCHANGE_API_KEY": "cmd-key"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "makerflow.cli",
            "exchange",
            "--port",
            "0",
            "--speed",
            "20",
            "--secret-file",
            str(secret),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "cmd-secret" not in line
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)

        async def go():
            c = ccxt_client(url, "cmd-key", "cmd-secret")
            try:
                await c.load_markets()
                first = await c.fetch_order_book("BTC/USDT")
                await asyncio.sleep(0.5)
                later = await c.fetch_order_book("BTC/USDT")
                return first, later, await c.fetch_balance()
            finally:
                await c.close()

        first, later, bal = run(go())
        # The random walk runs at 20x: about 100 top-of-book updates in half a second.
        assert later["nonce"] > first["nonce"] + 20
        assert bal["total"]["USDT"] == 100_000.0

        # Faults can be injected into a separate process over its admin endpoint.
        async def faulty():
            async with aiohttp.ClientSession() as http:
                await http.post(
                    f"{url}/_admin/faults",
                    json={"faults": [{"kind": "unavailable", "path": "/api/v3/account"}]},
                )
            c = ccxt_client(url, "cmd-key", "cmd-secret")
            try:
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await c.fetch_balance()
                return await c.fetch_balance()
            finally:
                await c.close()

        assert run(faulty())["total"]["BTC"] == 2.0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_pro_public_streams_book_trades_and_top(exchange):
    """watch_order_book (REST snapshot + depth diffs, Binance's sync rule) stays equal to the
    REST book while the replay runs and our orders come and go; watch_trades and
    watch_bids_asks follow the replay."""

    async def next_update(fut):
        await asyncio.sleep(0.05)
        exchange.advance(7)
        return await asyncio.wait_for(fut, 5)

    async def go():
        pro, rest = exchange.client(pro=True), exchange.client(rateLimit=1)
        try:
            await pro.load_markets()
            await rest.load_markets()
            trades = await next_update(asyncio.ensure_future(pro.watch_trades("BTC/USDT")))
            top = await next_update(asyncio.ensure_future(pro.watch_bids_asks(["BTC/USDT"])))
            await next_update(asyncio.ensure_future(pro.watch_order_book("BTC/USDT")))
            await rest.create_order(
                "BTC/USDT", "limit", "buy", 0.5, 61830.00, {"clientOrderId": "pub-1"}
            )
            with_ours = await next_update(asyncio.ensure_future(pro.watch_order_book("BTC/USDT")))
            with_ours = {"bids": [list(b) for b in with_ours["bids"]]}
            await rest.cancel_order(None, "BTC/USDT", {"clientOrderId": "pub-1"})
            books = []
            for _ in range(5):
                ws_book = await next_update(asyncio.ensure_future(pro.watch_order_book("BTC/USDT")))
                books.append(
                    (
                        ws_book["nonce"],
                        [list(x) for x in ws_book["bids"][:20]],
                        [list(x) for x in ws_book["asks"][:20]],
                        await rest.fetch_order_book("BTC/USDT", 20),
                    )
                )
            return trades, top, with_ours, books
        finally:
            await pro.close()
            await rest.close()

    trades, top, with_ours, books = run(go())
    assert trades and all(
        t["symbol"] == "BTC/USDT" and t["side"] in ("buy", "sell") for t in trades
    )
    assert top["BTC/USDT"]["bid"] < top["BTC/USDT"]["ask"]
    assert [61830.0, 0.5] in with_ours["bids"]
    for nonce, bids, asks, rest_book in books:
        assert rest_book["nonce"] == nonce
        assert (bids, asks) == (rest_book["bids"], rest_book["asks"])
        assert all(b[0] != 61830.0 for b in bids)
