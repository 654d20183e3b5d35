"""Tick -> order-intent latency inside the quoting flow, against a bare Bytewax pass-through.

    .venv/bin/python benchmarks/quoting.py [--quick] [--levels N]

The ticks are real: Binance spot BTC/USDT bookTicker updates from ``../shared/data`` (73 174
of them; ``--quick`` uses the 4 000 of ``tests/fixtures/quoting``), one tick per source batch
as a live feed delivers them, run with ``run_main`` (one worker) in this process.

Rows:
- ``pass-through map``: TestingSource -> ``op.map`` (identity) -> TestingSink; the baseline.
- ``quoting_op``: TestingSource -> the quoting operator (Avellaneda-Stoikov, N levels a side,
  refresh tolerance 1 bps, min quote lifetime 1 s) -> TestingSink of intents; once over all
  ticks, once over the ticks that produced intents (most ticks move no order: the refresh
  tolerance at work, and they leave the flow at the quoter).

Columns:
- ``step``: time spent handling one tick inside the step (the identity map's call; the
  quoter's ``on_tick`` as recorded in ``makerflow_tick_to_quote_latency_seconds``);
- ``flow``: from a stamp taken right after the source to a stamp taken as the tick's last
  order intent (or the passed-through tick) leaves the operator, including Bytewax's routing,
  keying and scheduling between the steps;
- ``ticks/s``: ticks over the wall time of the whole run.
Calibrate against the machine: the wall clock measures whatever else runs on it, so compare
rows of one run, not runs.
Target: quoting p99 <= 1 ms inside the flow.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.operators.ticks import book_tick
from makerflow.schemas.events import Tick

REPO = Path(__file__).resolve().parents[1]
SPOT = REPO.parent / "shared" / "data" / "binance" / "spot"
FULL = (SPOT / "btcusdt_20240808.gz", SPOT / "btcusdt_20240809.gz")
QUICK = REPO / "tests" / "fixtures" / "quoting" / "btcusdt_bookticker_20240808.gz"


def load_ticks(paths: tuple[Path, ...]) -> list[Tick]:
    """bookTicker lines -> ticks (event time = receive time; spot bookTicker has none)."""
    out: list[Tick] = []
    for path in paths:
        out.extend(_ticks_of(path))
    return out


def _ticks_of(path: Path) -> list[Tick]:
    out: list[Tick] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if "@bookTicker" not in line:
                continue
            recv, raw = line.split(" ", 1)
            d = json.loads(raw)["data"]
            bid, ask, bq, aq = float(d["b"]), float(d["a"]), float(d["B"]), float(d["A"])
            out.append(book_tick("binance", "BTC/USDT", int(recv), bid, bq, ask, aq))
    return out


def config(levels: int) -> QuotingConfig:
    market = MarketConfig(
        venue="binance",
        symbol="BTC/USDT",
        tick_size=0.01,
        lot_size=0.00001,
        min_qty=0.00001,
        min_notional=5.0,
    )
    params = QuotingParams(levels=levels, warmup_s=0.0, sigma_initial=4.0)
    return QuotingConfig(markets=(market,), defaults=params)


class Stamps:
    """Wall-clock stamps keyed by tick event time (unique in this data)."""

    def __init__(self) -> None:
        self.entry: dict[int, int] = {}
        self.exit: dict[int, int] = {}

    def enter(self, t: Tick) -> Tick:
        self.entry[t.ts] = time.perf_counter_ns()
        return t

    def leave(self, item: Any) -> Any:
        self.exit[item.ts] = time.perf_counter_ns()  # the last intent of a tick wins
        return item

    def latencies(self) -> list[int]:
        return [self.exit[ts] - self.entry[ts] for ts in self.exit if ts in self.entry]


def run_passthrough(ticks: list[Tick]) -> tuple[list[int], list[int], float]:
    stamps = Stamps()
    in_step: list[int] = []

    def identity(t: Tick) -> Tick:
        t0 = time.perf_counter_ns()
        out = t
        in_step.append(time.perf_counter_ns() - t0)
        return out

    flow = Dataflow("bench_passthrough")
    s = op.input("in", flow, TestingSource(ticks, batch_size=1))
    s = op.map("enter", s, stamps.enter)
    s = op.map("identity", s, identity)
    s = op.map("leave", s, stamps.leave)
    sink: list[Tick] = []
    op.output("out", s, TestingSink(sink))
    wall = _timed(lambda: run_main(flow))
    assert len(sink) == len(ticks)
    return in_step, stamps.latencies(), wall


def run_quoting(
    ticks: list[Tick], levels: int
) -> tuple[list[int], list[int], list[int], float, int]:
    """In-step times of all ticks and of the ticks that produced intents, their in-flow
    latencies, the wall time and the number of intents."""
    stamps = Stamps()
    in_step: list[int] = []
    flow = Dataflow("bench_quoting")
    s = op.input("in", flow, TestingSource(ticks, batch_size=1))
    s = op.map("enter", s, stamps.enter)
    empty: Any = op.filter("none", s, lambda _: False)  # no index, risk, orders...
    out = quoting_op(
        "quoting", s, empty, empty, empty, empty, empty, config(levels), in_step.append
    )
    intents = op.map("leave", out.intents, stamps.leave)
    sink: list[Any] = []
    op.output("out", intents, TestingSink(sink))
    wall = _timed(lambda: run_main(flow))
    assert len(in_step) == len(ticks)  # one worker: one timing per tick, in order
    changed = [dt for t, dt in zip(ticks, in_step, strict=True) if t.ts in stamps.exit]
    return in_step, changed, stamps.latencies(), wall, len(sink)


def _timed(fn: Callable[[], None]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pct(xs: list[int], q: float) -> float:
    """The q-th percentile in microseconds (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] / 1000


def row(name: str, in_step: list[int], in_flow: list[int] | None, rate: float | None) -> str:
    flow = (
        f" {pct(in_flow, 50):>8.1f} | {pct(in_flow, 99):>8.1f} | {max(in_flow) / 1000:>9.1f} |"
        if in_flow
        else f" {'-':>8} | {'-':>8} | {'-':>9} |"
    )
    per_s = f"{rate:>9.0f}" if rate is not None else f"{'-':>9}"
    return (
        f"| {name:<32} | {len(in_step):>7} | {pct(in_step, 50):>8.1f} |"
        f" {pct(in_step, 99):>8.1f} |{flow} {per_s} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 000 ticks instead of 73 174")
    ap.add_argument("--levels", type=int, default=3, help="ladder levels a side")
    args = ap.parse_args(argv)
    # No exchange confirms cancels here, so the quoter would warn about every order it stops
    # tracking after its retries; that is expected in this benchmark.
    logging.getLogger("makerflow.operators.quoting").setLevel(logging.ERROR)
    paths = (QUICK,) if args.quick or not all(p.exists() for p in FULL) else FULL
    ticks = load_ticks(paths)
    names = " + ".join(str(p.relative_to(REPO.parent)) for p in paths)
    print(f"{len(ticks)} ticks from {names}; {args.levels} levels a side")

    # warm both paths (imports, first-call costs) on a slice before measuring
    run_passthrough(ticks[:500])
    run_quoting(ticks[:500], args.levels)
    p_step, p_flow, p_wall = run_passthrough(ticks)
    q_step, q_changed, q_flow, q_wall, n_intents = run_quoting(ticks, args.levels)

    print()
    print(
        f"| {'flow':<32} |   ticks | step p50 | step p99 | flow p50 | flow p99 |"
        "  flow max |   ticks/s |"
    )
    print(f"|{'-' * 34}|--------:|" + "---------:|" * 4 + "----------:|----------:|")
    print(row("pass-through map", p_step, p_flow, len(ticks) / p_wall))
    print(row(f"quoting_op ({args.levels} levels), all ticks", q_step, None, len(ticks) / q_wall))
    print(row("quoting_op, ticks with intents", q_changed, q_flow, None))
    print()
    print("latencies in microseconds; step = inside the step, flow = source stamp to output")
    print(
        f"quoting: {n_intents} intents from {len(q_flow)} ticks;"
        f" mean in-flow {statistics.fmean(q_flow) / 1000:.1f} us;"
        f" in-flow p99 target <= 1000 us: {'met' if pct(q_flow, 99) <= 1000 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
