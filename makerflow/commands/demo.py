"""``makerflow demo``: the whole pipeline, embedded, against a local exchange and chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_CRASH_AT_S = 80.0
"""Two thirds into the replay: the quoter has traded for a minute when the market falls."""
DEFAULT_CRASH_PCT = -10.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="paper-trade replayed real BTC/USDT data end to end in one process (local exchange"
        " and chain)",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where streams are written")
    p.add_argument(
        "--seconds", type=float, default=130.0, help="stop after this long (the data lasts 120 s)"
    )
    p.add_argument(
        "--crash-at",
        type=float,
        default=DEFAULT_CRASH_AT_S,
        metavar="S",
        help="every replayed market moves by --crash-pct percent at S seconds into the run"
        f" (default {DEFAULT_CRASH_AT_S:g}: the kill switch at work)",
    )
    p.add_argument(
        "--crash-pct",
        type=float,
        default=DEFAULT_CRASH_PCT,
        metavar="P",
        help=f"the crash's move in percent (default {DEFAULT_CRASH_PCT:g}; positive for a spike)",
    )
    p.add_argument("--no-crash", action="store_true", help="run without the crash")
    p.add_argument(
        "--services",
        action="store_true",
        help="run every service in its own process (bytewax runner), joined by Kafka topics on"
        " the embedded broker, each serving /metrics",
    )
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="with --services: start Prometheus (if installed) scraping every service with the"
        " project's alert rules; the summary lists the alerts that fired",
    )
    p.add_argument(
        "--faults",
        choices=("none", "chaos"),
        default="none",
        help="chaos: the exchange mixes in lost answers, late requests, 429/418 bursts, venue"
        " expiries and duplicated, reordered and lost private events at a steady rate",
    )
    p.add_argument(
        "--chaos-rate",
        type=float,
        default=0.05,
        help="with --faults chaos: the share of order requests and private order reports hit",
    )
    p.add_argument("--chaos-seed", type=int, default=0, help="with --faults chaos: the mix's seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from makerflow.demo.progress import Progress, ProgressPrinter
    from makerflow.demo.report import print_report
    from makerflow.demo.runner import Crash, run_demo

    faults = "" if args.faults == "none" else f" with chaos at {args.chaos_rate:g}"
    print(
        f"makerflow demo: paper-trading 2 minutes of Binance BTC/USDT, replayed in real time"
        f" on a local exchange{faults}; the index also reads Binance USDT-M, COIN-M and a"
        f" Uniswap V3 pool on a local chain. Output: {args.out}"
    )
    crash = None
    if not args.no_crash and args.crash_at is not None:
        crash = Crash(args.crash_at, args.crash_pct)
        print(
            f"  at {crash.at_s:g}s every market moves {crash.pct:+g}%: watch the kill switch"
            " halt, cancel and confirm flat (--no-crash to run without)"
        )
    seconds = min(args.seconds, 120.0) if args.services else args.seconds
    progress = Progress(seconds)
    printer = ProgressPrinter(progress)
    try:
        if args.services:
            from makerflow.demo.services import run_services_demo

            def stage(message: str) -> None:
                if message.startswith("stopping") and printer.is_alive():
                    printer.stop()
                _stage(message)
                if message.startswith("market running"):
                    printer.start()

            run_services_demo(
                args.out,
                seconds=seconds,
                crash=crash,
                prometheus=args.prometheus,
                on_stage=stage,
                progress=progress,
            )
        else:
            printer.start()
            run_demo(
                args.out,
                seconds=args.seconds,
                faults=args.faults,
                chaos_rate=args.chaos_rate,
                chaos_seed=args.chaos_seed,
                crash=crash,
                progress=progress,
            )
    finally:
        if printer.is_alive():
            printer.stop()
    print_report(args.out)
    return 0


def _stage(message: str) -> None:
    print(f"  {message}", flush=True)
