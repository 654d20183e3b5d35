"""The private stream through ccxt against the local exchange: websocket (ccxt.pro) and
polling both turn our orders, fills and balances into events; the Bytewax partition never
blocks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent
from makerflow.sources.private_stream import (
    PrivateStreamConfig,
    PrivateStreamReader,
    PrivateStreamSource,
)
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
ENV = {"MAKERFLOW_EXCHANGE_API_KEY": DEFAULT_API_KEY, "MAKERFLOW_EXCHANGE_SECRET": DEFAULT_SECRET}


@pytest.fixture
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        yield ex


def factory(ex):
    return lambda pro: ex.client(pro=pro, rateLimit=1)


async def trade_while_reading(ex, mode):
    """Read the stream while we rest a bid, get it filled by replayed sellers, and rest an
    ask; return everything read."""
    cfg = PrivateStreamConfig(url=ex.url, mode=mode, poll_interval_s=0.05)
    reader = PrivateStreamReader(cfg, factory(ex))
    got: list = []
    rest = ex.client(rateLimit=1)
    stream = reader.events()

    async def read_until(pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not any(pred(e) for e in got):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; read {got}"
            got.append(await asyncio.wait_for(stream.__anext__(), left))

    try:
        await read_until(lambda e: isinstance(e, BalanceSnapshot))
        await rest.create_order(
            "BTC/USDT",
            "limit",
            "buy",
            0.002,
            61837.00,
            {"clientOrderId": "ps-bid", "postOnly": True},
        )
        await read_until(lambda e: isinstance(e, OrderEvent) and e.client_order_id == "ps-bid")
        while ex.advance(200):
            o = await rest.fetch_order(None, "BTC/USDT", {"clientOrderId": "ps-bid"})
            if o["status"] == "closed":
                break
        await read_until(lambda e: isinstance(e, OrderEvent) and e.status == "filled")
        await read_until(lambda e: isinstance(e, Fill))
        await read_until(
            lambda e: isinstance(e, BalanceSnapshot) and e.asset == "BTC" and e.total > 2.0
        )
    finally:
        await stream.aclose()
        await rest.close()
    return got, reader.mode_used


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_orders_fills_and_balances_become_events(exchange, mode):
    got, used = asyncio.run(trade_while_reading(exchange, mode))
    assert used == mode
    orders = [e for e in got if isinstance(e, OrderEvent)]
    fills = [e for e in got if isinstance(e, Fill)]
    assert orders[0].client_order_id == "ps-bid" and orders[0].status == "ack"
    assert orders[0].price == 61837.0 and orders[0].qty == 0.002
    assert orders[-1].status == "filled" and orders[-1].filled_qty == 0.002
    assert {f.client_order_id for f in fills} == {"ps-bid"}
    assert sum(f.qty for f in fills) == pytest.approx(0.002)
    assert all(
        f.liquidity == "maker" and f.fee_asset == "BTC" and f.price == 61837.0 for f in fills
    )
    # Fills carry the exchange's event time: the replayed data's clock (2024-08-08).
    assert all(1_723_161_250_000_000_000 < f.ts < 1_723_161_400_000_000_000 for f in fills)
    # No event twice.
    assert len({(f.trade_id) for f in fills}) == len(fills)
    btc = [e for e in got if isinstance(e, BalanceSnapshot) and e.asset == "BTC"]
    assert btc[0].total == 2.0 and btc[-1].total == pytest.approx(2 + 0.002 * 0.999)


def test_auto_mode_falls_back_to_polling_when_websocket_fails(exchange):
    def no_ws(pro):
        if pro:
            # A websocket URL nothing listens on: ccxt.pro fails to connect.
            c = exchange.client(pro=True)
            c.urls["api"]["ws"]["ws-api"]["spot"] = "ws://127.0.0.1:9/ws-api/v3"
            return c
        return exchange.client(rateLimit=1)

    async def go():
        cfg = PrivateStreamConfig(url=exchange.url, mode="auto", reconnect_backoff_s=0.01)
        reader = PrivateStreamReader(cfg, no_ws)
        stream = reader.events()
        try:
            first = await asyncio.wait_for(stream.__anext__(), 10)
        finally:
            await stream.aclose()
        return first, reader.mode_used

    first, used = asyncio.run(go())
    assert used == "polling"
    assert isinstance(first, BalanceSnapshot)


def test_source_partition_never_blocks(exchange, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    src = PrivateStreamSource(PrivateStreamConfig(url=exchange.url, mode="websocket"))
    assert src.list_parts() == ["binance:main"]
    part = src.build_part("private", "binance:main", None)
    got = []
    try:
        for _ in range(100):
            t0 = time.monotonic()
            got += part.next_batch()
            assert time.monotonic() - t0 < 1.0, "next_batch must return promptly"
            # The start-up balances may come over more than one batch.
            if {e.asset for e in got if isinstance(e, BalanceSnapshot)} >= {"BTC", "ETH", "USDT"}:
                break
    finally:
        part.close()
    assert {e.asset for e in got if isinstance(e, BalanceSnapshot)} == {"BTC", "ETH", "USDT"}


def test_start_up_snapshot_backfills_fills_after_the_resume_point(exchange):
    async def trade_twice():
        c = exchange.client(rateLimit=1)
        try:
            for i in range(2):
                await c.create_order(
                    "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": f"bf-{i}"}
                )
        finally:
            await c.close()

    async def first_fills(resume):
        reader = PrivateStreamReader(
            PrivateStreamConfig(url=exchange.url, mode="websocket"), factory(exchange), resume
        )
        stream = reader.events()
        got = []
        try:
            # Everything the start-up snapshot gives, until the stream goes quiet.
            while True:
                try:
                    got.append(await asyncio.wait_for(stream.__anext__(), 0.7))
                except TimeoutError:
                    break
        finally:
            await stream.aclose()
        return [e for e in got if isinstance(e, Fill)], reader.last_trade_ids

    asyncio.run(trade_twice())
    fills, last = asyncio.run(first_fills(None))
    # Fills that happened before the stream started are not lost, and carry our order ids.
    assert [(f.trade_id, f.client_order_id) for f in fills] == [("1", "bf-0"), ("2", "bf-1")]
    assert last == {"BTC/USDT": "2"}
    fills, _ = asyncio.run(first_fills({"BTC/USDT": "1"}))
    assert [f.trade_id for f in fills] == ["2"]


def test_a_dropped_websocket_reconnects_and_misses_nothing(exchange, caplog):
    """The user data stream dies (the venue closes every websocket); the reader reconnects,
    re-snapshots, and a fill made while it was away still arrives, once."""

    async def go():
        cfg = PrivateStreamConfig(url=exchange.url, mode="websocket", reconnect_backoff_s=0.05)
        reader = PrivateStreamReader(cfg, factory(exchange))
        stream = reader.events()
        rest = exchange.client(rateLimit=1)
        got = []

        async def read_until(pred):
            while not any(pred(e) for e in got):
                got.append(await asyncio.wait_for(stream.__anext__(), 10))

        try:
            await read_until(lambda e: isinstance(e, BalanceSnapshot))

            async def drop_all(server):
                for sockets in server._sockets.values():
                    for ws in list(sockets):
                        await ws.close()

            exchange._run(drop_all(exchange.server))
            await rest.create_order(
                "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "rc-1"}
            )
            await read_until(lambda e: isinstance(e, Fill) and e.client_order_id == "rc-1")
            # Let the stream run on a little: the fill must not come twice.
            with contextlib.suppress(TimeoutError):
                while True:
                    got.append(await asyncio.wait_for(stream.__anext__(), 0.5))
        finally:
            await stream.aclose()
            await rest.close()
        return got

    with caplog.at_level(logging.WARNING, logger="makerflow.sources.private_stream"):
        got = asyncio.run(go())
    assert "reconnecting" in caplog.text
    fills = [e for e in got if isinstance(e, Fill)]
    assert [(f.client_order_id, f.qty) for f in fills] == [("rc-1", 0.01)]
