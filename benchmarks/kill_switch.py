"""Kill switch latency: breach event -> confirmed flat at the local exchange.

    .venv/bin/python benchmarks/kill_switch.py [--trials 100] [--orders 10]

Each trial rests ``--orders`` post-only orders of ours on the local exchange (loopback,
Binance spot API, the unmodified ccxt async client), then times, from a breach reaching the
kill-switch state machine (:class:`ScopeMachine.on_breach`, which decides the cancel-all):

- ``flatten (confirmed)``: :func:`makerflow.sinks.flatten.flatten`: cancel-all, then the
  venue's open orders until none of ours remain;
- baseline ``cancel_all only``: what main did: one ``cancel_all_orders`` and no look at what
  is left (not a confirmation, only the answer of the cancel).

p50 / p99 over the trials; target p99 <= 250 ms for the confirmed path on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from makerflow.exchange import LocalExchange
from makerflow.operators.risk_limits import Breach, ScopeMachine
from makerflow.sinks.flatten import flatten

REPLAY = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/exchange/btcusdt_spot_top_trades_60s.gz"
)
SYMBOL = "BTC/USDT"
BREACH = Breach("largest_move", 1000.0, 500.0, "largest move 1000 bps > limit 500 bps")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def trials(ex: LocalExchange, n: int, orders: int) -> tuple[list[float], list[float]]:
    client = ex.client(timeout=2_000, enableRateLimit=False)
    await client.load_markets()
    seq = 0

    async def rest() -> None:
        nonlocal seq
        await asyncio.gather(
            *(
                client.create_order(
                    SYMBOL,
                    "limit",
                    "buy",
                    0.001,
                    50_000.0 + i,
                    {"clientOrderId": f"mf-b{seq}-{i}", "postOnly": True},
                )
                for i in range(orders)
            )
        )
        seq += 1

    confirmed: list[float] = []
    baseline: list[float] = []
    try:
        for trial in range(2 * n):
            await rest()
            machine = ScopeMachine("market:binance:BTC/USDT")
            t0 = time.perf_counter()
            t = machine.on_breach(time.time_ns(), [BREACH], {})
            assert t is not None and t.cancel_all
            if trial % 2 == 0:
                rep = await flatten(client, SYMBOL)
                assert rep.confirmed
                confirmed.append(time.perf_counter() - t0)
            else:
                await client.cancel_all_orders(SYMBOL)
                baseline.append(time.perf_counter() - t0)
                rep = await flatten(client, SYMBOL)  # clean up, untimed
                assert rep.confirmed
    finally:
        await client.close()
    return confirmed, baseline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--orders", type=int, default=10)
    args = ap.parse_args()
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        confirmed, baseline = asyncio.run(trials(ex, args.trials, args.orders))
    print(f"kill switch: breach -> flat, {args.orders} resting orders, {args.trials} trials each")
    print(f"{'path':<32}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, xs in (("flatten (confirmed)", confirmed), ("cancel_all only (baseline)", baseline)):
        print(
            f"{name:<32}{pct(xs, 0.5) * 1e3:>10.2f}{pct(xs, 0.99) * 1e3:>10.2f}"
            f"{statistics.mean(xs) * 1e3:>10.2f}"
        )
    ratio = pct(confirmed, 0.5) / pct(baseline, 0.5)
    p99 = pct(confirmed, 0.99) * 1e3
    verdict = "met" if p99 <= 250 else "MISSED"
    print(f"confirmed / baseline p50: {ratio:.2f}x; p99 <= 250 ms: {verdict} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()
