"""Backtest benchmark: a raw recording -> a backtest result, makerflow (and hftbacktest).

makerflow's side (:func:`run_makerflow`): the raw Binance USDT-M BTCUSDT recording of
2024-08-08 (``../shared/data/binance/usdm/btcusdt_20240808.gz``: depth diffs, bookTicker and
trades as received) through ``makerflow backtest`` as a user runs it: parse, book, ticks,
risk, quoting every event, the simulated venue with latencies and queues, every stream
written as JSONL, and the headline figures read back. ``--profile`` adds a cProfile of one
run and prints where the time goes.

hftbacktest's side (its conversion of the same raw file and a comparable market maker) is
``hftbacktest_result(path)`` in ``benchmarks/backtest_hftbacktest.py`` (the reports branch)
when that file is present: its convert + run joins the table (numba's compile apart), with
the ratio of the times; the target is makerflow within 2x of it.

    python benchmarks/backtest.py              # best of 3
    python benchmarks/backtest.py --profile    # and a profile of one run
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import importlib.util
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.backtest.run import FileInput, run_backtest  # noqa: E402
from makerflow.backtest.settings import load_backtest_config  # noqa: E402


def _data() -> Path:
    rel = Path("shared") / "data" / "binance" / "usdm" / "btcusdt_20240808.gz"
    for base in (REPO.parent, REPO.parent.parent, Path("/work")):
        if (base / rel).exists():
            return base / rel
    raise FileNotFoundError(f"no {rel} next to the repository")


def run_makerflow(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """One makerflow backtest of ``path`` (raw file -> result): wall time, the raw messages
    of the file (``events``, the count every row of the table uses) and the headline
    figures. The quoter requotes on every tick (the engine runs per event)."""
    cfg = load_backtest_config(None)
    with gzip.open(path, "rb") as fh:
        raw_messages = sum(1 for _ in fh)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir) if out_dir else Path(tmp) / "bt"
        started = time.perf_counter()
        res = run_backtest(FileInput((str(path),)), cfg, out)
        seconds = time.perf_counter() - started
    return {
        "name": "makerflow backtest",
        "seconds": seconds,
        "events": raw_messages,
        "events_per_s": raw_messages / seconds,
        "parsed_events": res.events,
        "fills": res.figures["fills"],
        "pnl": res.figures["pnl"],
    }


def hftbacktest_rows(path: Path) -> list[dict[str, Any]]:
    """hftbacktest's convert + run, its numba compile apart, and NautilusTrader's where it
    installs, as rows of the table (the reports branch's ``run_hftbacktest``), when present."""
    module = _hftbacktest()
    if module is None:
        return []
    return list(module.run_hftbacktest(path))


def _hftbacktest() -> Any:
    spec_path = Path(__file__).with_name("backtest_hftbacktest.py")
    if not spec_path.exists():
        return None
    spec = importlib.util.spec_from_file_location("backtest_hftbacktest", spec_path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module if hasattr(module, "run_hftbacktest") else None


STAGES = {
    "read + parse the raw file": ("sources/recorded.py", "next_batch"),
    "book + ticks (MarketTicks.feed)": ("operators/market_ticks.py", "feed"),
    "quoting (Quoter.on_tick)": ("operators/quoter.py", "on_tick"),
    "quoting (on_order_event + on_fill)": ("operators/quoter.py", "on_order_event|on_fill"),
    "risk (windows, limits, kill switch)": (
        "backtest/risk.py",
        "on_tick|on_order_event|on_fill|on_index|on_quality",
    ),
    "simulated venue (trades, book, orders)": ("backtest/venue.py", "on_trade|on_book|arrive"),
    "index (BasketIndex.update)": ("operators/index_basket.py", "update"),
    "reconciliation (BalanceRecon)": ("operators/recon_logic.py", "on_leg|on_snapshot"),
    "encode + write part files": ("backtest/flow.py", "_lines|write_batch"),
    "assemble <name>.jsonl": ("backtest/flow.py", "assemble"),
    "headline figures": ("backtest/summary.py", "headline"),
}


def profile(path: Path, top: int = 20) -> str:
    """Where one run's time goes: the pipeline's stages (cumulative, so nested stages are
    inside their callers: quoting's time is not in the venue's), then the top functions."""
    prof = cProfile.Profile()
    prof.enable()
    run_makerflow(path)
    prof.disable()
    stats = pstats.Stats(prof)
    raw: Any = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _), (_, _, _, ct, _) in raw.items())
    lines = [f"profile of one run (cProfile slows it down ~3x): {total:.2f} s in run_main"]
    for label, (file, names) in STAGES.items():
        wanted = set(names.split("|"))
        cum = sum(
            ct
            for (fname, _, func), (_, _, _, ct, _) in raw.items()
            if fname.endswith(file) and func in wanted
        )
        lines.append(f"  {label:<42}{cum:>7.2f} s {100 * cum / total:>5.1f} %")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return "\n".join(lines) + "\n" + buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--input", help="raw recording (default: the USDT-M BTCUSDT file)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--makerflow-only", action="store_true", help="skip the other backtesters")
    args = ap.parse_args(argv)
    path = Path(args.input) if args.input else _data()
    rows: list[dict[str, Any]] = []
    best = min((run_makerflow(path) for _ in range(args.repeat)), key=lambda r: r["seconds"])
    rows.append(best)
    if not args.makerflow_only:
        rows.extend(hftbacktest_rows(path))
    print(f"raw recording -> backtest result: {path.name} (best of {args.repeat})")
    print(f"{'':<34}{'seconds':>9}{'raw msgs':>10}{'msgs/s':>11}{'fills':>7}  vs makerflow")
    for r in rows:
        ratio = r["seconds"] / best["seconds"]
        print(
            f"{r['name']:<34}{r['seconds']:>9.2f}{r['events']:>10}{r['events_per_s']:>11,.0f}"
            f"{r.get('fills', ''):>7}  {ratio:.2f}x"
        )
    if args.profile:
        print(profile(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
