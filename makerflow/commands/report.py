"""``makerflow report RUN_DIR``: the report of a demo or backtest run (table, parquet, HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="report of a run directory: PnL, inventory, markouts, ratios; parquet and HTML",
    )
    p.add_argument("run_dir", type=Path, help="a run's --out directory (its <stream>.jsonl)")
    p.add_argument("--out", type=Path, help="where to write the report (default: RUN_DIR)")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: every `makerflow` command registers its parser, and only this one
    # needs matplotlib.
    from makerflow.reports.writer import write_report

    try:
        written = write_report(args.run_dir, args.out, html=not args.no_html)
    except FileNotFoundError as exc:
        print(exc)
        return 2
    print(written.table)
    for path in written.parquet.values():
        print(f"wrote {path}")
    if written.html is not None:
        print(f"wrote {written.html}")
    return 0
