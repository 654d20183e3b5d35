"""``makerflow backtest`` from the command line: one run with its files and report, a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from makerflow.cli import main
from tests.conftest import FIXTURES

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def test_one_run_writes_every_stream_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bt"
    argv = ["backtest", "--input", str(SPOT), "--out", str(out), "--no-progress"]
    assert main([*argv, "--param", "quoting.warmup_s=2", "--json", "--no-report"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["fills"] > 0 and figures["orders"] > 0
    for name in ("ticks", "fills", "order_events", "intents", "ladders", "balances"):
        assert (out / f"{name}.jsonl").stat().st_size > 0, name
    assert main([*argv, "--param", "quoting.warmup_s=2"]) == 0
    assert (out / "report.html").exists() and list(out.glob("report_*.parquet"))
    assert "markout 1 s" in capsys.readouterr().out


def test_a_sweep_runs_every_combination_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    argv = ["backtest", "--input", str(SPOT), "--out", str(out), "--no-report", "--json"]
    sweep = ["--param", "quoting.warmup_s=2", "--param", "quoting.model=fixed_spread"]
    sweep += ["--param", "quoting.half_spread_bps=0.2,2"]
    assert main([*argv, *sweep, "--jobs", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"half_spread_bps=0.2", "half_spread_bps=2"}
    # Quotes ten times wider fill less.
    assert rows["half_spread_bps=2"]["fills"] < rows["half_spread_bps=0.2"]["fills"]
    assert (out / "half_spread_bps=2" / "fills.jsonl").exists()


def test_bad_settings_are_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backtest", "--input", str(SPOT), "--out", "/nonexistent/x"]
    assert main([*argv, "--param", "quoting.gama=0.1"]) == 2
    assert "gama" in capsys.readouterr().err
    assert main([*argv, "--param", "nosuch.x=1"]) == 2
    assert "unknown section" in capsys.readouterr().err
