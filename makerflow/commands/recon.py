"""``makerflow recon report``: a summary of reconciliation reports per ``account:asset``.

Reads ReconReports from a JSON-lines file (one encoded event per line, as the Kafka values)
or from a topic, prints one row per balance and optionally writes it to parquet. Amended
windows count once, by their newest version.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from makerflow.schemas.codec import EventDecodeError
from makerflow.schemas.events import ReconReport
from makerflow.schemas.topics import RECON_REPORTS

REPORT_SCHEMA: dict[str, Any] = {
    "account": pl.String,
    "asset": pl.String,
    "window_start": pl.Int64,
    "window_end": pl.Int64,
    "version": pl.Int64,
    "opening": pl.Float64,
    "expected": pl.Float64,
    "reported": pl.Float64,
    "difference": pl.Float64,
    "tolerance": pl.Float64,
    "fills_matched": pl.Int64,
    "status": pl.String,
    "reason": pl.String,
}


def reports_frame(reports: Iterable[ReconReport]) -> pl.DataFrame:
    """One row per report (every version), with the columns of :data:`REPORT_SCHEMA`."""
    rows = [{c: getattr(r, c) for c in REPORT_SCHEMA} for r in reports]
    return pl.DataFrame(rows, schema=REPORT_SCHEMA, orient="row")


def summarize(df: pl.DataFrame) -> pl.DataFrame:
    """Per ``account:asset``: windows, breaks, amended and unconfirmed windows, the largest
    absolute difference, the latest version and the first and last window (UTC).

    A window amended by late events is judged by its newest version only.
    """
    latest = df.sort("version").group_by(["account", "asset", "window_start"]).last()
    return (
        latest.group_by(["account", "asset"])
        .agg(
            pl.len().alias("windows"),
            (pl.col("status") == "BREAK").sum().alias("breaks"),
            (pl.col("version") > 1).sum().alias("amended"),
            pl.col("reported").is_null().sum().alias("unconfirmed"),
            pl.col("difference").abs().max().alias("max_abs_difference"),
            pl.col("version").max().alias("latest_version"),
            pl.col("fills_matched").sum().alias("fills"),
            pl.col("window_start").min().alias("first_window"),
            pl.col("window_end").max().alias("last_window_end"),
        )
        .with_columns(
            pl.concat_str("account", pl.lit(":"), "asset").alias("balance"),
            pl.from_epoch("first_window", time_unit="ns").dt.replace_time_zone("UTC"),
            pl.from_epoch("last_window_end", time_unit="ns").dt.replace_time_zone("UTC"),
            pl.col("breaks").cast(pl.Int64),
            pl.col("amended").cast(pl.Int64),
            pl.col("unconfirmed").cast(pl.Int64),
            pl.col("windows").cast(pl.Int64),
        )
        .select(
            "balance",
            "windows",
            "breaks",
            "amended",
            "unconfirmed",
            "fills",
            "max_abs_difference",
            "latest_version",
            "first_window",
            "last_window_end",
        )
        .sort("balance")
    )


_DECODER = msgspec.json.Decoder(ReconReport)


def load_jsonl(path: Path) -> tuple[list[ReconReport], list[str]]:
    """The reports in ``path`` and, for each line that is not one, why."""
    reports: list[ReconReport] = []
    bad: list[str] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                reports.append(_DECODER.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                bad.append(f"{path}:{n}: {exc}")
    return reports, bad


def load_topic(brokers: list[str], topic: str) -> tuple[list[ReconReport], list[str]]:
    from makerflow.kafka_admin import read_topic

    reports: list[ReconReport] = []
    bad: list[str] = []
    for m in read_topic(brokers, topic):
        try:
            reports.append(RECON_REPORTS.codec.decode(m.value() or b""))
        except EventDecodeError as exc:
            bad.append(f"{topic}[{m.partition()}]@{m.offset()}: {exc}")
    return reports, bad


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "recon", help="reconciliation tools (see `makerflow recon report -h`)"
    )
    rsub = p.add_subparsers(dest="recon_command", metavar="SUBCOMMAND", required=True)
    r: argparse.ArgumentParser = rsub.add_parser(
        "report", help="summarize reconciliation reports per account:asset"
    )
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="a JSON-lines file of ReconReports")
    src.add_argument("--topic", help=f"a Kafka topic of ReconReports (e.g. {RECON_REPORTS.name})")
    r.add_argument(
        "--brokers",
        default=os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers, comma-separated (default: $MAKERFLOW_BROKERS)",
    )
    r.add_argument("--parquet", type=Path, help="also write the summary to this parquet file")
    r.add_argument(
        "--fail-on-break",
        action="store_true",
        help="exit with status 1 if any window's newest version is a BREAK (for cron and CI)",
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.input is not None:
        if not args.input.exists():
            print(f"no such file: {args.input}", file=sys.stderr)
            return 2
        reports, bad = load_jsonl(args.input)
    else:
        reports, bad = load_topic([b for b in args.brokers.split(",") if b], args.topic)
    for b in bad[:10]:
        print(f"skipped: {b}", file=sys.stderr)
    if len(bad) > 10:
        print(f"skipped {len(bad) - 10} more bad records", file=sys.stderr)
    summary = summarize(reports_frame(reports))
    if args.parquet is not None:
        summary.write_parquet(args.parquet)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(summary)
    breaks = int(summary["breaks"].sum()) if summary.height else 0
    print(f"{len(reports)} reports, {summary.height} balances, {breaks} windows in BREAK")
    if args.parquet is not None:
        print(f"wrote {args.parquet}")
    return 1 if breaks and args.fail_on_break else 0
