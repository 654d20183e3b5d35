"""``makerflow demo``: the whole pipeline, embedded, against a local exchange and chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    from makerflow.demo.report import print_report
    from makerflow.demo.runner import run_demo

    faults = "" if args.faults == "none" else f" with chaos at {args.chaos_rate:g}"
    print(
        f"makerflow demo: replaying 2 minutes of Binance BTC/USDT in real time{faults} -> "
        f"{args.out}"
    )
    result = run_demo(
        args.out,
        seconds=args.seconds,
        faults=args.faults,
        chaos_rate=args.chaos_rate,
        chaos_seed=args.chaos_seed,
    )
    print_report(result.out_dir)
    return 0
