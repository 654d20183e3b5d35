"""Index throughput: basket index updates/s for a 10-asset basket over 5 venues per asset.

    .venv/bin/python benchmarks/index.py [--quick]

Each asset has 4 CEX venues (ticks) and 1 DEX pool; the events walk each venue's price and
come round-robin over the 50 venues, 50 ms of event time apart, so every venue stays fresh
and one venue in 50 is an outlier now and then. Every event yields one IndexPrice carrying
all 10 constituents with their used and excluded venues.

Rows:
- ``pure``: ``BasketIndex.update`` per event, against a pass-through loop (the same events
  through a function returning them) in the same process;
- ``bytewax``: ``index_op`` in a Bytewax flow (``run_main``, one worker) from a
  TestingSource to a counting sink, against the same flow with ``op.map`` identity in place
  of the index (the pass-through baseline: source, routing and sink costs alone).

One process, one thread: one core.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from makerflow.operators.index import index_op
from makerflow.operators.index_basket import BasketIndex
from makerflow.operators.index_config import Basket, BasketAsset, IndexConfig
from makerflow.schemas.events import DexPrice, Tick

ASSETS = ("BTC", "ETH", "SOL", "XRP", "BNB", "ADA", "DOGE", "AVAX", "LINK", "DOT")
CEX = ("binance", "okx", "bybit", "coinbase")
MS = 1_000_000
T0 = 1_723_161_600_000 * MS

BASKET = Basket(
    name="TOP10",
    quote="USDT",
    quote_aliases=("USDC", "USD"),
    assets=tuple(BasketAsset(asset=a, weight=1.0 + i) for i, a in enumerate(ASSETS)),
)
CONFIG = IndexConfig(baskets=(BASKET,))

Event = Tick | DexPrice


def make_events(n: int, seed: int = 11) -> list[Event]:
    rng = random.Random(seed)
    start = {a: 10.0 * (i + 1) ** 3 for i, a in enumerate(ASSETS)}
    venues = [(a, v) for a in ASSETS for v in (*CEX, "uniswap_v3")]
    price = {key: start[key[0]] for key in venues}
    out: list[Event] = []
    for i in range(n):
        asset, venue = venues[i % len(venues)]
        p = price[(asset, venue)] * (1.0 + rng.gauss(0.0, 0.0002))
        price[(asset, venue)] = p
        shown = p * 1.05 if rng.random() < 0.01 else p  # an occasional outlier
        ts = T0 + i * 50 * MS
        if venue == "uniswap_v3":
            out.append(
                DexPrice(
                    ts=ts,
                    chain="ethereum",
                    venue=venue,
                    pool=f"0x{asset.lower():0>40}",
                    base=asset,
                    quote="USDC",
                    block=20_000_000 + i // 240,
                    price=shown,
                    liquidity=250_000.0,
                )
            )
        else:
            half = shown * 0.00005
            out.append(
                Tick(
                    ts=ts,
                    venue=venue,
                    symbol=f"{asset}/USDT",
                    reason="book",
                    bid=shown - half,
                    bid_qty=3.0,
                    ask=shown + half,
                    ask_qty=2.5,
                    mid=shown,
                    microprice=shown,
                    spread_bps=1.0,
                    imbalance=0.1,
                )
            )
    return out


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pure_index(events: Sequence[Event]) -> Callable[[], None]:
    def run() -> None:
        index = BasketIndex(BASKET, CONFIG)
        emitted = 0
        for e in events:
            if index.update(e) is not None:
                emitted += 1
        assert emitted == len(events), emitted

    return run


def pure_baseline(events: Sequence[Event]) -> Callable[[], None]:
    def passthrough(e: Event) -> Event:
        return e

    def run() -> None:
        emitted = 0
        for e in events:
            if passthrough(e) is not None:
                emitted += 1
        assert emitted == len(events)

    return run


class _Count(StatelessSinkPartition[Any]):
    def __init__(self, box: list[int]) -> None:
        self.box = box

    def write_batch(self, items: list[Any]) -> None:
        self.box[0] += len(items)


class CountingSink(DynamicSink[Any]):
    """Counts items; keeps nothing, so the sink costs the same in both flows."""

    def __init__(self) -> None:
        self.box = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self.box)


def is_tick(e: Event) -> bool:
    return isinstance(e, Tick)


def flow_run(events: Sequence[Event], with_index: bool) -> Callable[[], None]:
    def run() -> None:
        flow = Dataflow("bench_index")
        # One source in event-time order, split by type, as a replay would feed it.
        split = op.branch("split", op.input("in", flow, TestingSource(events)), is_tick)
        ticks, dex = split.trues, split.falses
        sink = CountingSink()
        if with_index:
            out = index_op("index", ticks, dex, CONFIG)
        else:
            merged = op.merge("merge", ticks, dex)
            out = op.map("passthrough", merged, lambda e: e)
        op.output("out", out, sink)
        run_main(flow)
        assert sink.box[0] == len(events), sink.box[0]

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (a few seconds)")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 100_000
    events = make_events(n)
    rows: list[tuple[str, str, int, float, float]] = []
    for name, run, base in (
        ("pure", pure_index(events), pure_baseline(events)),
        ("bytewax", flow_run(events, True), flow_run(events, False)),
    ):
        t_run, t_base = timed(run), timed(base)
        rows.append((name, "index", n, t_run, t_base))

    print(f"index: 10-asset basket x 5 venues (4 CEX + 1 DEX), {n} events, 1 IndexPrice each")
    head = ("path", "events", "index s", "updates/s", "baseline/s", "x slower")
    print(f"{head[0]:<9} {head[1]:>8} {head[2]:>9} {head[3]:>11} {head[4]:>12} {head[5]:>9}")
    for name, _, count, t_run, t_base in rows:
        print(
            f"{name:<9} {count:>8} {t_run:>9.3f} {count / t_run:>11,.0f} "
            f"{count / t_base:>12,.0f} {t_run / t_base:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
