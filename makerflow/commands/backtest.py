"""``makerflow backtest``: the trading pipeline over a replay, against a simulated venue.

Input: recorded files (every format ``makerflow ticks`` reads) or recorded Kafka topics
(from the beginning, from offsets, or from a time), bounded by the end offsets taken at the
start. Settings: the services' TOML tables (``--config``) plus ``--param section.key=value``;
a ``--param`` with several comma-separated values is a sweep (several make a grid), one run
per combination in parallel processes and one table of the headline figures. Output:
``--out DIR`` gets every stream as ``DIR/<name>.jsonl``, the report's parquet files and
``DIR/report.html``. ``--market synthetic`` runs the Avellaneda-Stoikov synthetic market
instead.

    makerflow backtest --input data/btcusdt_20240808.gz --out out/bt
    makerflow backtest --input data/btcusdt_20240808.gz --out out/sweep \\
        --param quoting.gamma=0.01,0.05,0.1 --param venue.entry_latency_ms=1,10
    makerflow backtest --brokers 127.0.0.1:9092 --from-time 2024-08-08T23:55:00Z --out out/k
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from makerflow.backtest.latency import latencies_of_run
from makerflow.backtest.run import (
    BacktestResult,
    FileInput,
    KafkaInput,
    fmt,
    run_backtest,
    table,
)
from makerflow.backtest.settings import BacktestConfig, Override, grid, label, load_backtest_config
from makerflow.schemas import topics as t

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "backtest", help="replay recorded data through the pipeline against a simulated venue"
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument("--input", nargs="+", help="recorded file(s) or directories")
    src.add_argument("--brokers", help="Kafka bootstrap servers: replay recorded topics")
    src.add_argument(
        "--topics",
        nargs="+",
        default=[t.MD_BOOK.name, t.MD_TRADES.name],
        help="topics to replay (default md.book md.trades; add dex.prices)",
    )
    src.add_argument(
        "--from-time",
        help="start at the first message at or after this broker time"
        " (ISO 8601, or ms since the epoch)",
    )
    src.add_argument(
        "--offset",
        action="append",
        default=[],
        metavar="TOPIC:PARTITION=OFFSET",
        help="start a partition at an offset (repeatable)",
    )
    src.add_argument(
        "--control",
        nargs="+",
        default=[],
        metavar="FILE",
        help="control commands (JSON lines: halt, resume, set_params) replayed with the files",
    )
    src.add_argument("--venue", help="rename the venue of recorded files")
    src.add_argument("--symbol", help="rename the symbol of recorded files")
    p.add_argument("--market", choices=["recorded", "synthetic"], default="recorded")
    p.add_argument("--config", help="TOML with [ticks] [index] [quoting] [risk] [recon] [venue]")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE[,VALUE...]",
        help="override a setting; several values make a sweep (repeatable: a grid)",
    )
    p.add_argument(
        "--latencies-from",
        metavar="RUN_DIR",
        help="draw entry and cancel latencies from a live run's intents and order events",
    )
    p.add_argument("--out", help="output directory (every stream as <name>.jsonl, the report)")
    p.add_argument("--workers", type=int, default=1, help="Bytewax workers per run")
    p.add_argument("--jobs", type=int, default=0, help="parallel runs of a sweep (default: CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the parquet + HTML report")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    try:
        from makerflow.commands.backtest_synthetic import add_synthetic_args

        add_synthetic_args(p)
    except ImportError:  # the synthetic market is an optional part
        pass
    p.set_defaults(func=run)


def _from_time_ms(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _offsets(items: list[str]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for item in items:
        where, _, offset = item.rpartition("=")
        topic, _, part = where.rpartition(":")
        if not topic or not part.isdigit() or not offset.isdigit():
            raise ValueError(f"--offset {item!r}: expected TOPIC:PARTITION=OFFSET")
        out[(topic, int(part))] = int(offset)
    return out


def input_of(args: argparse.Namespace) -> FileInput | KafkaInput:
    if args.input and args.brokers:
        raise ValueError("give --input (files) or --brokers (Kafka topics), not both")
    if args.input:
        return FileInput(
            tuple(args.input),
            venue=args.venue,
            symbol=args.symbol,
            control=tuple(args.control),
        )
    if args.brokers:
        return KafkaInput(
            brokers=tuple(b for b in args.brokers.split(",") if b),
            topics=tuple(args.topics),
            from_time_ms=_from_time_ms(args.from_time),
            offsets=_offsets(args.offset),
        )
    raise ValueError("nothing to replay: give --input FILES or --brokers")


def one_run(
    inp: FileInput | KafkaInput,
    config: BacktestConfig,
    out: Path,
    workers: int,
    progress: bool,
    report: bool,
) -> tuple[BacktestResult, str]:
    """One backtest, then its report (parquet + HTML); the report's table."""
    res = run_backtest(inp, config, out, workers=workers, progress=progress)
    text = ""
    if report:
        try:
            from makerflow.reports.writer import write_report
        except ImportError:
            logger.warning("makerflow.reports is not installed: no report written")
        else:
            text = write_report(out).table
    return res, text


def _sweep_run(job: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    name, inp, config, out, workers, report = job
    res, _ = one_run(inp, config, out, workers, False, report)
    return name, {**res.figures, "events_per_s": res.events_per_s}


def run(args: argparse.Namespace) -> int:
    if args.market == "synthetic":
        from makerflow.commands.backtest_synthetic import run_synthetic_cli

        return int(run_synthetic_cli(args))
    try:
        inp = input_of(args)
        combos = grid(args.param)
        base: list[Override] = []
        if args.latencies_from:
            entry, cancel = latencies_of_run(args.latencies_from)
            if not entry:
                raise ValueError(f"{args.latencies_from}: no acknowledged order to measure")
            base.append(("venue.entry_latency_samples_ms", list(entry)))
            if cancel:
                base.append(("venue.cancel_latency_samples_ms", list(cancel)))
        configs: list[tuple[tuple[Override, ...], BacktestConfig]] = [
            (c, load_backtest_config(args.config, [*base, *c])) for c in combos
        ]
    except (ValueError, OSError) as exc:
        print(f"makerflow backtest: {exc}", file=sys.stderr)
        return 2
    if not args.out:
        print("makerflow backtest: --out DIR is required", file=sys.stderr)
        return 2
    out = Path(args.out)
    report = not args.no_report
    if len(configs) == 1:
        res, text = one_run(inp, configs[0][1], out, args.workers, not args.no_progress, report)
        if args.json:
            print(json.dumps({**res.figures, "events_per_s": res.events_per_s}, sort_keys=True))
            return 0
        print(text or "\n".join(f"{k}: {fmt(v)}" for k, v in res.figures.items()))
        print(
            f"{res.events} events in {res.seconds:.2f} s ({res.events_per_s:,.0f} events/s);"
            f" streams in {out}/"
        )
        return 0
    jobs = [
        (label(c, args.param), inp, cfg, out / label(c, args.param), args.workers, report)
        for c, cfg in configs
    ]
    n = args.jobs or min(len(jobs), multiprocessing.cpu_count())
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        rows = list(pool.map(_sweep_run, jobs))
    if args.json:
        print(json.dumps(dict(rows), sort_keys=True))
    else:
        print(table(rows))
        print(f"{len(rows)} runs in {out}/<run>/")
    return 0
