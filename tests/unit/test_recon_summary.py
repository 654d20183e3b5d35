"""`makerflow recon report`: the polars summary of reconciliation reports, and the command."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from makerflow.cli import main
from makerflow.commands.recon import reports_frame, summarize
from makerflow.operators.recon_logic import reconcile_all
from makerflow.schemas.codec import encode
from makerflow.schemas.events import ReconReport
from tests.recon_sessions import CFG, FILLS, OPENING, T0, W, exchange_session, reports


def report(
    asset: str, start: int, version: int, status: str, diff: float | None, **kw
) -> ReconReport:
    return ReconReport(
        ts=start + W - 1,
        account=kw.get("account", "main"),
        asset=asset,
        window_start=start,
        window_end=start + W,
        version=version,
        opening=1.0,
        expected=1.0,
        reported=None if diff is None else 1.0 + diff,
        difference=diff,
        tolerance=1e-8,
        fills_matched=kw.get("fills", 0),
        status=status,  # type: ignore[arg-type]
    )


def test_summary_counts_each_window_once_by_its_newest_version() -> None:
    rs = [
        report("BTC", T0, 1, "BREAK", 0.5, fills=1),
        report("BTC", T0, 2, "OK", 0.0, fills=2),  # amended: the break was a late fill
        report("BTC", T0 + W, 1, "BREAK", -0.25, fills=3),
        report("BTC", T0 + 2 * W, 1, "BREAK", None),  # no snapshot: unconfirmed
        report("USDT", T0, 1, "OK", 1e-9),
        report("ETH", T0, 1, "OK", 0.0, account="alt"),
    ]
    s = summarize(reports_frame(rs))
    assert s["balance"].to_list() == ["alt:ETH", "main:BTC", "main:USDT"]
    btc = s.filter(pl.col("balance") == "main:BTC").row(0, named=True)
    assert btc["windows"] == 3
    assert btc["breaks"] == 2
    assert btc["amended"] == 1
    assert btc["unconfirmed"] == 1
    assert btc["fills"] == 5
    assert btc["max_abs_difference"] == pytest.approx(0.25)  # not 0.5: that was superseded
    assert btc["latest_version"] == 2
    assert btc["first_window"].timestamp() == T0 / 1e9
    assert btc["last_window_end"].timestamp() == (T0 + 3 * W) / 1e9
    usdt = s.filter(pl.col("balance") == "main:USDT").row(0, named=True)
    assert (usdt["breaks"], usdt["max_abs_difference"]) == (0, pytest.approx(1e-9))


def test_summary_of_nothing_is_an_empty_table() -> None:
    s = summarize(reports_frame([]))
    assert s.height == 0 and "max_abs_difference" in s.columns


def test_command_prints_the_table_and_writes_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = [e for e in exchange_session(FILLS, OPENING, 3) if getattr(e, "trade_id", "") != "t3"]
    rs = reports(reconcile_all(session, CFG))
    src = tmp_path / "reports.jsonl"
    src.write_bytes(b"\n".join(encode(r) for r in rs) + b"\nnot json\n")
    out = tmp_path / "summary.parquet"
    assert main(["recon", "report", "--input", str(src), "--parquet", str(out)]) == 0
    printed = capsys.readouterr()
    assert "main:BTC" in printed.out and "main:USDT" in printed.out
    assert "2 windows in BREAK" in printed.out
    assert "skipped" in printed.err and ":9:" in printed.err
    back = pl.read_parquet(out)
    assert back.equals(summarize(reports_frame(rs)))
    assert back.filter(pl.col("balance") == "main:BTC")["breaks"].item() == 1
    assert main(["recon", "report", "--input", str(src), "--fail-on-break"]) == 1
