"""Reports of a run (backtest or demo): PnL, inventory, fills, spread captured, markouts,
drawdown, fill ratio and order-to-trade ratio, as polars frames, parquet files, a printed
table and one self-contained HTML page with plots.

Input: a run directory of JSON-lines streams as the demo and ``makerflow backtest --out``
write them (``ticks``, ``fills``, ``order_events``, ``executions``, ``intents``, ``ladders``;
any may be missing). Output, in the run directory unless told otherwise:
``report_summary.parquet`` (one headline row per market), ``report_pnl.parquet`` (PnL and
inventory after every tick and fill), ``report_markouts.parquet`` (one row per fill),
``report_markout_curve.parquet``, ``report_orders.parquet`` and ``report.html``.

    frames = load_run(Path("out/demo"))   # the run's streams as raw frames (I/O)
    report = compute(frames)              # pure: every figure as a polars frame
    print(format_table(report))           # the headline figures, formatted for people
    write_report(Path("out/demo"))        # all of it: parquet files + report.html

or from the shell: ``makerflow report out/demo``.
"""

from makerflow.reports.frames import load_run
from makerflow.reports.html import render_html
from makerflow.reports.summary import Report, compute, format_table
from makerflow.reports.writer import WrittenReport, write_report

__all__ = [
    "Report",
    "WrittenReport",
    "compute",
    "format_table",
    "load_run",
    "render_html",
    "write_report",
]
