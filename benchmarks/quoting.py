"""Tick -> order-intent latency inside the quoting flow, against a bare Bytewax pass-through
and against the quoter as it was before the calibration work (issue 13), in the same run.

    .venv/bin/python benchmarks/quoting.py [--quick] [--levels N]

The ticks are real: Binance spot BTC/USDT bookTicker updates and trades from
``../shared/data`` (73 174 book ticks and 19 904 trade ticks; ``--quick`` uses the demo's two
minutes, ``makerflow/demo/data``), one tick per source batch as a live feed delivers them,
run with ``run_main`` (one worker) in this process.

Rows:
- ``pass-through map``: TestingSource -> ``op.map`` (identity) -> TestingSink; the baseline.
- ``quoting_op``: TestingSource -> the quoting operator with its defaults (GLFT, volatility
  on a 1 s grid, A and kappa fitted from the trade ticks, N levels a side) -> TestingSink of
  intents; once over all ticks, once over the ticks that produced intents.
- ``baseline quoting_op``: the same operator at commit ``BASELINE_REV`` (A-S, tick-level
  EWMA volatility, refresh tolerance 1 bps), loaded from git into a private package so that
  both run in this process on the same ticks.

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
import importlib.util
import json
import logging
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.market_ticks import book_tick
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.schemas.events import Tick

REPO = Path(__file__).resolve().parents[1]
# ``../shared`` beside the repository (or beside a worktree's parent directory)
SPOT = (
    next(
        (p for p in (REPO.parent / "shared", REPO.parent.parent / "shared") if p.exists()),
        REPO.parent / "shared",
    )
    / "data"
    / "binance"
    / "spot"
)
FULL = (SPOT / "btcusdt_20240808.gz", SPOT / "btcusdt_20240809.gz")
QUICK = REPO / "makerflow" / "demo" / "data" / "binance_spot_btcusdt_20240808_2min.gz"
BASELINE_REV = "3bcdde4"
"""The last commit before the calibration work: its quoter is the baseline row."""
_BASELINE_MODULES = ("ladder", "quoting_models", "quoting_config", "quoting")


def load_ticks(paths: tuple[Path, ...]) -> list[Tick]:
    """bookTicker lines -> book ticks, trade lines -> trade ticks with the top they met
    (event time = receive time, made unique, since spot bookTicker carries none)."""
    out: list[Tick] = []
    for path in paths:
        out.extend(_ticks_of(path, out[-1].ts if out else 0))
    return out


def _ticks_of(path: Path, last_ts: int) -> list[Tick]:
    out: list[Tick] = []
    top: Tick | None = None
    with gzip.open(path, "rt") as f:
        for line in f:
            book = "@bookTicker" in line
            if not book and ("@trade" not in line or top is None):
                continue
            recv, raw = line.split(" ", 1)
            d = json.loads(raw)["data"]
            ts = last_ts = max(int(recv), last_ts + 1)
            if book:
                bid, ask, bq, aq = float(d["b"]), float(d["a"]), float(d["B"]), float(d["A"])
                top = book_tick("binance", "BTC/USDT", ts, bid, bq, ask, aq)
                out.append(top)
            elif top is not None:
                price, qty = float(d["p"]), float(d["q"])
                out.append(
                    msgspec.structs.replace(
                        top, ts=ts, reason="trade", last_price=price, last_qty=qty
                    )
                )
    return out


MARKET_RULES: dict[str, Any] = {
    "venue": "binance",
    "symbol": "BTC/USDT",
    "tick_size": 0.01,
    "lot_size": 0.00001,
    "min_qty": 0.00001,
    "min_notional": 5.0,
}


def config(levels: int) -> QuotingConfig:
    # Nothing answers the orders in this benchmark: lift the bound on unresolved orders so
    # the quoter does the same work per tick as the baseline (which had no such bound).
    params = QuotingParams(
        levels=levels, warmup_s=0.0, sigma_initial=4.0, max_unresolved_orders=1_000_000
    )
    return QuotingConfig(markets=(MarketConfig(**MARKET_RULES),), defaults=params)


def load_baseline(rev: str = BASELINE_REV) -> types.ModuleType:
    """The quoting modules of ``rev`` as the private package ``_mf_baseline`` (their
    imports of each other rewritten; everything else is today's makerflow)."""
    pkg = types.ModuleType("_mf_baseline")
    pkg.__path__ = []
    sys.modules["_mf_baseline"] = pkg
    for name in _BASELINE_MODULES:
        src = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:makerflow/operators/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for other in _BASELINE_MODULES:
            src = src.replace(f"makerflow.operators.{other} ", f"_mf_baseline.{other} ")
            src = src.replace(f"makerflow.operators.{other}\n", f"_mf_baseline.{other}\n")
        spec = importlib.util.spec_from_loader(f"_mf_baseline.{name}", loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(src, f"{rev}:makerflow/operators/{name}.py", "exec"), module.__dict__)
        setattr(pkg, name, module)
    return pkg


def baseline_config(pkg: types.ModuleType, levels: int) -> Any:
    cfg = pkg.quoting_config
    params = cfg.QuotingParams(levels=levels, warmup_s=0.0, sigma_initial=4.0)
    return cfg.QuotingConfig(markets=(cfg.MarketConfig(**MARKET_RULES),), defaults=params)


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
    ticks: list[Tick], levels: int, baseline: types.ModuleType | None = None
) -> tuple[list[int], list[int], list[int], float, int]:
    """In-step times of all ticks and of the ticks that produced intents, their in-flow
    latencies, the wall time and the number of intents (of the baseline's operator when
    ``baseline`` is given)."""
    stamps = Stamps()
    in_step: list[int] = []
    flow = Dataflow("bench_quoting")
    s = op.input("in", flow, TestingSource(ticks, batch_size=1))
    s = op.map("enter", s, stamps.enter)
    empty: Any = op.filter("none", s, lambda _: False)  # no index, risk, orders...
    if baseline is None:
        op_fn: Any = quoting_op
        cfg: Any = config(levels)
    else:
        op_fn, cfg = baseline.quoting.quoting_op, baseline_config(baseline, levels)
    out = op_fn("quoting", s, empty, empty, empty, empty, empty, cfg, in_step.append)
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
    ap.add_argument("--quick", action="store_true", help="the demo's two minutes of ticks")
    ap.add_argument("--levels", type=int, default=3, help="ladder levels a side")
    args = ap.parse_args(argv)
    # No exchange confirms cancels here, so the quoter would warn about every order it stops
    # tracking after its retries; that is expected in this benchmark.
    logging.getLogger("makerflow.operators.quoter").setLevel(logging.ERROR)
    logging.getLogger("makerflow.operators.quoter_orders").setLevel(logging.ERROR)
    logging.getLogger("_mf_baseline.quoting").setLevel(logging.ERROR)
    paths = (QUICK,) if args.quick or not all(p.exists() for p in FULL) else FULL
    ticks = load_ticks(paths)
    names = " + ".join(p.name for p in paths)
    n_trades = sum(1 for t in ticks if t.reason == "trade")
    print(f"{len(ticks)} ticks ({n_trades} trades) from {names}; {args.levels} levels a side")
    try:
        baseline: types.ModuleType | None = load_baseline()
    except (subprocess.CalledProcessError, OSError, ImportError, SyntaxError) as exc:
        print(f"baseline {BASELINE_REV} not loadable ({exc}); its rows are left out")
        baseline = None

    # warm every path (imports, first-call costs) on a slice before measuring
    run_passthrough(ticks[:500])
    run_quoting(ticks[:500], args.levels)
    if baseline is not None:
        run_quoting(ticks[:500], args.levels, baseline)
    p_step, p_flow, p_wall = run_passthrough(ticks)
    q_step, q_changed, q_flow, q_wall, n_intents = run_quoting(ticks, args.levels)
    b_run = run_quoting(ticks, args.levels, baseline) if baseline is not None else None

    print()
    print(
        f"| {'flow':<32} |   ticks | step p50 | step p99 | flow p50 | flow p99 |"
        "  flow max |   ticks/s |"
    )
    print(f"|{'-' * 34}|--------:|" + "---------:|" * 4 + "----------:|----------:|")
    print(row("pass-through map", p_step, p_flow, len(ticks) / p_wall))
    print(row(f"quoting_op ({args.levels} levels), all ticks", q_step, None, len(ticks) / q_wall))
    print(row("quoting_op, ticks with intents", q_changed, q_flow, None))
    if b_run is not None:
        b_step, b_changed, b_flow, b_wall, b_intents = b_run
        print(row(f"baseline {BASELINE_REV}, all ticks", b_step, None, len(ticks) / b_wall))
        print(row(f"baseline {BASELINE_REV}, with intents", b_changed, b_flow, None))
    print()
    print("latencies in microseconds; step = inside the step, flow = source stamp to output")
    print(
        f"quoting: {n_intents} intents from {len(q_flow)} ticks;"
        f" mean in-flow {statistics.fmean(q_flow) / 1000:.1f} us;"
        f" in-flow p99 target <= 1000 us: {'met' if pct(q_flow, 99) <= 1000 else 'MISSED'}"
    )
    if b_run is not None:
        print(
            f"baseline {BASELINE_REV}: {b_intents} intents from {len(b_flow)} ticks;"
            f" quoting_op ticks/s = {b_wall / q_wall:.2f} x the baseline's"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
