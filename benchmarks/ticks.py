"""Ticks throughput on real recorded Binance data, next to a bare Bytewax pass-through.

The same parsed events (book snapshots/diffs and trades, in recorded order) go through:

* ``input -> output``: no step in between (what Bytewax costs with nothing to do);
* ``pass-through``: ``TestingSource -> op.map(identity) -> output``, the baseline of the
  target (as in the other services' benchmarks: one Python step per event);
* ``keyed pass-through``: ``key_on -> stateful_map(identity) -> key_rm``: the routing and
  per-key state plumbing the ticks operator needs, with no work;
* ``ticks_op``: ``TestingSource -> ticks_op -> outputs`` (the ticks service's operator);
* ``MarketTicks`` (no Bytewax): the pure per-market logic in a plain loop, for reference.

Each is run ``--repeat`` times, interleaved, and the best run counts (the machine is shared).
Rates are events/s and book updates/s; the target is ticks_op >= 0.25 of pass-through on one
worker.

    python benchmarks/ticks.py            # spot (2 files) + USDT-M + COIN-M BTC, 83k events
    python benchmarks/ticks.py --quick    # the spot BTC file of 2024-08-08 only (13k events)
    python benchmarks/ticks.py --batch 1  # one event per source batch (per-item overheads)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.operators.market_ticks import MarketTicks  # noqa: E402
from makerflow.operators.ticks import TicksConfig, ticks_op  # noqa: E402
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter  # noqa: E402
from makerflow.sources.recorded import read_recorded  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "binance"
FIXTURE = REPO / "tests" / "fixtures" / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
TARGET = 0.25


class _CountPart(StatelessSinkPartition[Any]):
    def __init__(self, box: list[int]) -> None:
        self.box = box

    def write_batch(self, items: list[Any]) -> None:
        self.box[0] += len(items)


class CountSink(DynamicSink[Any]):
    """Counts what reaches it (a sink that does no work of its own)."""

    def __init__(self) -> None:
        self.box = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPart:
        return _CountPart(self.box)


def load(quick: bool) -> list[Any]:
    if quick:
        paths = [DATA / "spot" / "btcusdt_20240808.gz"]
    else:
        paths = [
            DATA / "spot" / "btcusdt_20240808.gz",
            DATA / "spot" / "btcusdt_20240809.gz",
            DATA / "usdm" / "btcusdt_20240808.gz",
            DATA / "cm" / "btcusd_perp_20240808.gz",
        ]
    if not all(p.exists() for p in paths):
        print(f"shared data not found under {DATA}; using the test fixture {FIXTURE.name}")
        paths = [FIXTURE]
    return [e for e in read_recorded(paths) if not isinstance(e, DeadLetter)]


def bare(events: list[Any], batch: int) -> tuple[float, int]:
    flow = Dataflow("bench_bare")
    src = op.input("in", flow, TestingSource(events, batch_size=batch))
    sink = CountSink()
    op.output("out", src, sink)
    t = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t, sink.box[0]


def passthrough(events: list[Any], batch: int) -> tuple[float, int]:
    flow = Dataflow("bench_pass")
    src = op.input("in", flow, TestingSource(events, batch_size=batch))
    same = op.map("identity", src, lambda e: e)
    sink = CountSink()
    op.output("out", same, sink)
    t = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t, sink.box[0]


def keyed(events: list[Any], batch: int) -> tuple[float, int]:
    flow = Dataflow("bench_keyed")
    src = op.input("in", flow, TestingSource(events, batch_size=batch))
    k = op.key_on("key", src, lambda e: e.key)
    same = op.stateful_map("identity", k, lambda s, e: (s, e))
    sink = CountSink()
    op.output("out", op.key_rm("unkey", same), sink)
    t = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t, sink.box[0]


def ticks(events: list[Any], batch: int, config: TicksConfig) -> tuple[float, int]:
    flow = Dataflow("bench_ticks")
    src = op.input("in", flow, TestingSource(events, batch_size=batch))
    out = ticks_op("ticks", src, None, config)
    sinks = [CountSink() for _ in range(4)]
    for name, stream, sink in zip(
        ("out_ticks", "out_bars", "out_quality", "out_dead"),
        (out.ticks, out.bars, out.quality, out.dead_letters),
        sinks,
        strict=True,
    ):
        op.output(name, stream, sink)
    t = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - t, sinks[0].box[0]


def pure(events: list[Any], config: TicksConfig) -> tuple[float, int]:
    markets: dict[str, MarketTicks] = {}
    n = 0
    t = time.perf_counter()
    for ev in events:
        m = markets.get(ev.key)
        if m is None:
            m = markets[ev.key] = MarketTicks(ev.venue, ev.symbol, config)
        n += len(m.on_event(ev))
    return time.perf_counter() - t, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=ap_fmt())
    ap.add_argument("--quick", action="store_true", help="one file, fewer repeats")
    ap.add_argument("--repeat", type=int, help="runs per variant, best counts (default 3/2)")
    ap.add_argument("--batch", type=int, default=1000, help="source batch size")
    args = ap.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 3)
    config = TicksConfig()

    t0 = time.perf_counter()
    events = load(args.quick)
    load_s = time.perf_counter() - t0
    n = len(events)
    n_book = sum(isinstance(e, BookSnapshot | BookDelta) for e in events)
    markets = len({e.key for e in events})
    print(
        f"{n} events ({n_book} book updates, {n - n_book} trades) in {markets} markets;"
        f" read and parsed in {load_s:.2f} s ({n / load_s:,.0f} events/s)"
    )

    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):
        for name, fn in (
            ("input -> output", lambda: bare(events, args.batch)),
            ("pass-through", lambda: passthrough(events, args.batch)),
            ("keyed pass-through", lambda: keyed(events, args.batch)),
            ("ticks_op", lambda: ticks(events, args.batch, config)),
            ("MarketTicks (no Bytewax)", lambda: pure(events, config)),
        ):
            took, out = fn()
            if name not in best or took < best[name][0]:
                best[name] = (took, out)

    base = n / best["pass-through"][0]
    print()
    head = ("variant", "seconds", "events/s", "book upd/s", "outputs", "vs pass")
    print(f"{head[0]:<26} {head[1]:>8} {head[2]:>12} {head[3]:>12} {head[4]:>9} {head[5]:>8}")
    for name, (took, out) in best.items():
        rate = n / took
        print(
            f"{name:<26} {took:>8.3f} {rate:>12,.0f} {n_book / took:>12,.0f}"
            f" {out:>9} {rate / base:>8.3f}"
        )
    ratio = (n / best["ticks_op"][0]) / base
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"\nticks_op / pass-through = {ratio:.3f} on one worker ({verdict} the {TARGET} target)")
    keyed_ratio = best["keyed pass-through"][0] / best["ticks_op"][0]
    print(
        f"ticks_op / keyed pass-through = {keyed_ratio:.3f} (the same routing and per-key"
        " state with no work: what any keyed operator pays before its logic)"
    )
    return 0


def ap_fmt() -> type[argparse.HelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


if __name__ == "__main__":
    sys.exit(main())
