"""Risk throughput: ticks/s through the pure window logic and through the Bytewax operator.

    .venv/bin/python benchmarks/risk.py [--quick]

Rows (each against a baseline measured in the same process on the same recorded ticks):
- ``windows (pure)``: :class:`MarketRisk` ``on_tick`` + ``measures`` + ``check_market`` per
  tick, 60 s window sliding by 5 s, against a naive trailing window that keeps the window's
  mids in a deque and rescans it for the range on every tick;
- ``risk_op run_main``: the whole risk operator in a one-worker dataflow against a dataflow
  that only routes the same ticks through the same input, filter and output.

Ticks: Binance spot BTCUSDT bookTicker, 3 minutes (tests/fixtures/risk), repeated and shifted
in time to the wanted count. One process, one thread: one core.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from makerflow.operators.risk import risk_op
from makerflow.operators.risk_buckets import NS_PER_S, WindowSpec
from makerflow.operators.risk_limits import (
    MarketConfig,
    MarketLimits,
    RiskConfig,
    check_market,
)
from makerflow.operators.risk_windows import MarketRisk
from makerflow.schemas.events import Tick
from tests.risk_support import MARKET, SYMBOL, VENUE, recorded_ticks

SPEC = WindowSpec(60 * NS_PER_S, 5 * NS_PER_S)
LIMITS = MarketLimits(max_move_bps=500.0, max_realized_vol_bps=300.0)
CONFIG = RiskConfig(markets=(MarketConfig(venue=VENUE, symbol=SYMBOL, limits=LIMITS),))


def ticks(n: int) -> list[Tick]:
    base = recorded_ticks()
    span = base[-1].ts - base[0].ts + NS_PER_S
    out: list[Tick] = []
    k = 0
    while len(out) < n:
        for t in base:
            out.append(_shift(t, k * span))
            if len(out) >= n:
                break
        k += 1
    return out


def _shift(t: Tick, by: int) -> Tick:
    if not by:
        return t
    return Tick(**{f: getattr(t, f) for f in t.__struct_fields__ if f != "ts"}, ts=t.ts + by)


def windows_pure(data: list[Tick]) -> int:
    m = MarketRisk(MARKET, SYMBOL, SPEC)
    halts = 0
    for t in data:
        m.on_tick(t)
        halts += bool(check_market(m.measures(), LIMITS))
    return halts


def naive_window(data: list[Tick]) -> int:
    win: deque[tuple[int, float]] = deque()
    halts = 0
    for t in data:
        win.append((t.ts, t.mid))
        start = SPEC.window_of(t.ts)[0]
        while win and win[0][0] < start:
            win.popleft()
        lo = min(p for _, p in win)
        hi = max(p for _, p in win)
        halts += (hi / lo - 1) * 1e4 > 500.0
    return halts


def risk_flow(data: list[Tick]) -> int:
    flow = Dataflow("bench_risk")
    src = op.input("inp", flow, TestingSource(data, batch_size=1000))
    none: Any = op.filter("none", src, lambda x: False)
    out = risk_op("risk", src, none, none, none, none, none, CONFIG)
    got: list[Any] = []
    op.output("states", out.states, TestingSink(got))
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return len(got)


def passthrough_flow(data: list[Tick]) -> int:
    flow = Dataflow("bench_pass")
    src = op.input("inp", flow, TestingSource(data, batch_size=1000))
    kept = op.filter("keep", src, lambda x: x.mid > 0)
    got: list[Any] = []
    op.output("out", kept, TestingSink(got))
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return len(got)


def timed(fn: Callable[[list[Tick]], int], data: list[Tick], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t0)
    return len(data) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer ticks, one repeat")
    args = ap.parse_args()
    n = 20_000 if args.quick else 50_000
    repeat = 1 if args.quick else 3
    data = ticks(n)
    rows = [
        ("windows (pure)", windows_pure, "naive deque window", naive_window),
        ("risk_op run_main", risk_flow, "passthrough flow", passthrough_flow),
    ]
    print(f"risk benchmark: {n} recorded BTCUSDT ticks, best of {repeat}")
    print(f"{'row':<20} {'ticks/s':>12} {'baseline':<20} {'ticks/s':>12} {'ratio':>7}")
    for name, fn, bname, bfn in rows:
        rate = timed(fn, data, repeat)
        # The naive window rescans ~4 500 ticks per tick: one run is plenty.
        base = timed(bfn, data, 1 if bfn is naive_window else repeat)
        print(f"{name:<20} {rate:>12,.0f} {bname:<20} {base:>12,.0f} {rate / base:>7.2f}")


if __name__ == "__main__":
    main()
