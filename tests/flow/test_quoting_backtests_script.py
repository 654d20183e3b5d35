"""benchmarks/quoting_backtests.py (issue 13's evidence table) on a short slice of the demo's
recording: every quoter runs, and every column of the table comes out of its run's streams."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "makerflow" / "demo" / "data" / "binance_spot_btcusdt_20240808_2min.gz"


def _script() -> ModuleType:
    path = REPO / "benchmarks" / "quoting_backtests.py"
    spec = importlib.util.spec_from_file_location("quoting_backtests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_script_runs_every_quoter_on_a_slice_and_fills_every_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qb = _script()
    out = tmp_path / "qb"
    argv = ["--input", str(DEMO), "--seconds", "75", "--out", str(out), "--paths", "50"]
    assert qb.main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    columns = [key for key, _, _ in qb.COLUMNS]
    assert list(result["quoters"]) == list(qb.QUOTERS)
    for i, (name, figures) in enumerate(result["quoters"].items()):
        run = out / f"q{i}"
        assert set(figures) == set(columns), name
        # the figures are the run's own: counted from its streams
        assert figures["fills"] == _lines(run / "fills.jsonl"), name
        placed = [
            json.loads(line)
            for line in (run / "intents.jsonl").read_text().splitlines()
            if '"place"' in line
        ]
        assert figures["orders_placed"] == len({p["client_order_id"] for p in placed}), name
        assert figures["orders_placed"] > 0, name
        assert figures["fill_ratio"] == pytest.approx(figures["fills"] / figures["orders_placed"])
        assert figures["min_inventory"] <= 0.0 <= figures["max_inventory"], name
        # one venue fee schedule for all: every maker fill pays 2 bps of its notional
        notional = sum(
            json.loads(line)["qty"] * json.loads(line)["price"]
            for line in (run / "fills.jsonl").read_text().splitlines()
            if line.strip()
        )
        assert figures["fees"] == pytest.approx(notional * 2e-4, rel=1e-6, abs=1e-9), name
    assert any(f["fills"] > 0 for f in result["quoters"].values())  # the fee check bites
    # inventory control: the symmetric strategy's profit and final inventory spread wider
    inv, sym = result["synthetic"]["inventory"], result["synthetic"]["symmetric"]
    assert inv["std_profit"] < sym["std_profit"]
    assert inv["std_final_q"] < sym["std_final_q"]

    # the printed form: the commands that reproduce each run, and both tables
    assert qb.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("makerflow backtest --input") == len(qb.QUOTERS)
    assert "--param venue.maker_fee=0.0002" in text
    header = next(line for line in text.splitlines() if line.startswith("| quoter |"))
    assert [h.strip() for h in header.strip("|").split("|")][1:] == [h for _, h, _ in qb.COLUMNS]
    assert "| inventory |" in text and "| symmetric |" in text


def test_old_defaults_are_the_3bcdde4_quoter_in_base_units() -> None:
    """Row (a)'s settings load, and gamma per BTC is 3bcdde4's 0.005 per 0.001 BTC order."""
    from makerflow.backtest.settings import grid, load_backtest_config

    qb = _script()
    params = qb.QUOTERS["before calibration (3bcdde4)"]
    config = load_backtest_config(None, grid([*params, *qb.venue_params(2.0, 5.0)])[0])
    p = config.quoting.defaults
    assert p.model == "avellaneda_stoikov"
    assert p.gamma * p.order_size == pytest.approx(0.005)
    assert (p.kappa, p.horizon_s, p.rolling_horizon, p.warmup_s) == (0.3, 60.0, True, 10.0)
    assert p.position_limit == float("inf") and p.maker_fee_bps == 0.0
    assert not p.estimate_intensity
    assert config.venue.maker_fee == pytest.approx(2e-4)
