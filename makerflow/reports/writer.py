"""Write a run's report next to its streams: parquet files, ``report.html``, the table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from makerflow.reports.frames import load_run
from makerflow.reports.html import render_html
from makerflow.reports.summary import Report, compute, format_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenReport:
    report: Report
    html: Path | None
    parquet: dict[str, Path]
    table: str


def write_report(
    run_dir: Path,
    out_dir: Path | None = None,
    *,
    html: bool = True,
    title: str | None = None,
) -> WrittenReport:
    """Read ``run_dir``'s streams, compute the report and write ``report_*.parquet`` and
    ``report.html`` to ``out_dir`` (default: the run directory itself)."""
    report = compute(load_run(run_dir))  # first: a wrong path must not create a directory
    out = out_dir or run_dir
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for stem, df in report.tables().items():
        path = out / f"{stem}.parquet"
        df.write_parquet(path)
        written[stem] = path
    page: Path | None = None
    if html:
        page = out / "report.html"
        page.write_text(render_html(report, title or f"makerflow report: {run_dir.name}"))
        log.info("report written to %s", page)
    return WrittenReport(report=report, html=page, parquet=written, table=format_table(report))
