"""Reports of a run (backtest or demo): PnL, inventory, fills, spread captured, markouts,
drawdown, fill ratio and order-to-trade ratio, as polars frames, parquet files, a printed
table and one self-contained HTML page with plots.

    frames = load_run(Path("out/demo"))   # the run's JSONL streams as raw frames (I/O)
    report = compute(frames)              # pure: every figure as a polars frame
    print(format_table(report))
    write_report(Path("out/demo"))        # parquet files + report.html in the run directory
"""

from makerflow.reports.frames import load_run
from makerflow.reports.summary import Report, compute, format_table

__all__ = ["Report", "compute", "format_table", "load_run"]
