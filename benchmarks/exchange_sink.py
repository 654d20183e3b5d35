"""Intents per second through the exchange sink against the local exchange.

Baselines, measured in the same process against the same exchange: raw signed aiohttp POSTs
(no ccxt), and bare ccxt ``create_order`` calls (no guards, rounding, retries or events).
Every row places the same N limit orders with the same concurrency (the sink runs one market's
independent intents concurrently, so the baselines get the same concurrency); the book is
emptied between rows, outside the timing.

    .venv/bin/python benchmarks/exchange_sink.py [--quick] [-n N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import time
import urllib.parse
from pathlib import Path

import aiohttp
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.operators.guards import GuardLimits
from makerflow.schemas.events import OrderIntent
from makerflow.sinks.exchange import (
    Credentials,
    ExchangeExecutor,
    ExchangeSinkConfig,
    execute_intents,
)

REPLAY = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/exchange/btcusdt_spot_top_trades_60s.gz"
)
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)


def prices(n: int) -> list[float]:
    # Bids spread over 5 000 ticks under the market, so none fill and none repeat.
    return [round(61_000.0 - (i % 5000) * 0.01, 2) for i in range(n)]


def intents(n: int, tag: str) -> list[OrderIntent]:
    return [
        OrderIntent(
            ts=i,
            venue="binance",
            symbol="BTC/USDT",
            action="place",
            client_order_id=f"{tag}-{i}",
            side="buy",
            price=p,
            qty=0.001,
            reference=p,
        )
        for i, p in enumerate(prices(n))
    ]


async def gather_limited(coros, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(c):
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def raw_aiohttp(url: str, n: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as session:

        async def post(i: int, price: float) -> None:
            q = urllib.parse.urlencode(
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.001",
                    "price": f"{price:.2f}",
                    "newClientOrderId": f"raw-{i}",
                    "timestamp": int(time.time() * 1000),
                }
            )
            sig = hmac.new(DEFAULT_SECRET.encode(), q.encode(), hashlib.sha256).hexdigest()
            async with session.post(
                f"{url}/api/v3/order",
                data=f"{q}&signature={sig}",
                headers={
                    "X-MBX-APIKEY": DEFAULT_API_KEY,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            ) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

        t0 = time.perf_counter()
        await gather_limited([post(i, p) for i, p in enumerate(prices(n))], concurrency)
        return time.perf_counter() - t0


async def bare_ccxt(ex: LocalExchange, n: int, concurrency: int) -> float:
    client = ex.client(enableRateLimit=False)
    try:
        await client.load_markets()
        t0 = time.perf_counter()
        await gather_limited(
            [
                client.create_order(
                    "BTC/USDT",
                    "limit",
                    "buy",
                    0.001,
                    p,
                    {"clientOrderId": f"ccxt-{i}", "postOnly": True},
                )
                for i, p in enumerate(prices(n))
            ],
            concurrency,
        )
        return time.perf_counter() - t0
    finally:
        await client.close()


def sink_config(ex: LocalExchange) -> ExchangeSinkConfig:
    # The open-order guard is raised so every benchmark order rests.
    return ExchangeSinkConfig(
        url=ex.url,
        enable_rate_limit=False,
        intent_ttl_ms=None,
        look_up_replays=False,
        sweep_interval_s=None,
        guards=GuardLimits(max_open_orders_per_market=10**6),
    )


async def sink(ex: LocalExchange, n: int, concurrency: int) -> float:
    executor = ExchangeExecutor(sink_config(ex), credentials=CREDS)
    try:
        await executor.client()
        batch = intents(n, "sink")
        t0 = time.perf_counter()
        for i in range(0, n, concurrency):
            events = await executor.execute_many(batch[i : i + concurrency])
            assert all(e.status == "ack" for e in events), events[:3]
        return time.perf_counter() - t0
    finally:
        await executor.close()


def sink_in_flow(ex: LocalExchange, n: int, _concurrency: int) -> float:
    out: list = []
    flow = Dataflow("bench_sink")
    s = op.input("in", flow, TestingSource(intents(n, "flow"), batch_size=_concurrency))
    op.output(
        "out",
        execute_intents("execute", s, sink_config(ex), credentials=CREDS).orders,
        TestingSink(out),
    )
    t0 = time.perf_counter()
    run_main(flow)
    took = time.perf_counter() - t0
    assert len(out) == n and all(e.status == "ack" for e in out), [
        e for e in out if e.status != "ack"
    ][:2]
    return took


def clear(ex: LocalExchange) -> None:
    def cancel_all(s):
        if s.engine.open_orders("main", "BTCUSDT"):
            s.engine.cancel_all("main", "BTCUSDT")

    ex.call(cancel_all)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run")
    ap.add_argument("-n", type=int, default=None, help="orders per row")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 2000)
    rows = []
    with LocalExchange(
        speed=0,
        replay=REPLAY,
        check_timestamp=True,
        balances={"main": {"USDT": 1_000_000_000, "BTC": 1000}},
    ) as ex:
        ex.advance(1)
        for name, fn in [
            (
                "raw aiohttp signed POST (baseline)",
                lambda: asyncio.run(raw_aiohttp(ex.url, n, args.concurrency)),
            ),
            (
                "bare ccxt create_order (baseline)",
                lambda: asyncio.run(bare_ccxt(ex, n, args.concurrency)),
            ),
            ("ExchangeExecutor.execute_many", lambda: asyncio.run(sink(ex, n, args.concurrency))),
            ("execute_intents operator (run_main)", lambda: sink_in_flow(ex, n, args.concurrency)),
        ]:
            took = fn()
            placed = len(ex.call(lambda s: s.engine.open_orders("main", "BTCUSDT")))
            assert placed == n, f"{name}: {placed} orders rest, expected {n}"
            clear(ex)
            rows.append((name, n, took, n / took))
    base = rows[0][3]
    print(
        f"\nexchange sink throughput: {n} limit orders, concurrency {args.concurrency}, "
        "local exchange on loopback (same process)\n"
    )
    print(f"{'path':40} {'orders':>7} {'seconds':>8} {'orders/s':>9} {'vs raw':>7}")
    for name, count, took, rate in rows:
        print(f"{name:40} {count:>7} {took:>8.2f} {rate:>9.0f} {rate / base:>7.2f}")


if __name__ == "__main__":
    main()
