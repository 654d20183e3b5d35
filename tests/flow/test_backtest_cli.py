"""``makerflow backtest`` from the command line: one run with its files and report, a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from makerflow.backtest.latency import latencies_of_run
from makerflow.cli import main
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    Alert,
    ControlCommand,
    DeadLetter,
    OrderEvent,
    OrderIntent,
    RiskState,
)
from makerflow.sinks.jsonl import read_jsonl
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
NS = 1_000_000_000


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


def test_latencies_from_a_live_run_are_drawn_by_the_venue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "live"
    argv = ["backtest", "--input", str(SPOT), "--no-report", "--no-progress", "--json"]
    assert main([*argv, "--out", str(live), "--param", "quoting.warmup_s=2"]) == 0
    capsys.readouterr()
    # A first backtest stands in for the live run: its intents and acks give latencies (5 ms
    # entry, plus 5 ms of report latency for a place decided on a fill, which carries the
    # venue's earlier time, as live).
    measured = set(latencies_of_run(live)[0])
    assert measured == {5.0, 10.0}
    out = tmp_path / "bt"
    args = [*argv, "--out", str(out), "--param", "quoting.warmup_s=2"]
    assert main([*args, "--latencies-from", str(live)]) == 0
    places = {
        i.client_order_id: i
        for i in read_jsonl(out / "intents.jsonl", OrderIntent)
        if i.action == "place"
    }
    acks = [e for e in read_jsonl(out / "order_events.jsonl", OrderEvent) if e.status == "ack"]
    delays = {(a.ts - places[a.client_order_id].ts) / 1e6 for a in acks}
    assert {5.0, 10.0} <= delays <= {m + r for m in measured for r in (0.0, 5.0)}
    assert main([*argv, "--out", str(out), "--latencies-from", str(tmp_path)]) == 2


def test_control_commands_replay_with_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = next(iter(read_recorded(SPOT))).ts
    halt, resume = first + 20 * NS, first + 35 * NS
    commands = [
        ControlCommand(ts=halt, command="halt", scope="global", issued_by="desk", reason="test"),
        ControlCommand(
            ts=halt + NS,
            command="set_params",
            scope="market:binance:BTC/USDT",
            params={"max_move_bps": 400.0},
        ),
        # A resume must say who and why: this one is refused, the next one is not.
        ControlCommand(ts=resume - NS, command="resume", scope="global", issued_by="desk"),
        ControlCommand(
            ts=resume, command="resume", scope="global", issued_by="desk", reason="tested"
        ),
        ControlCommand(ts=resume, command="halt", scope="nonsense"),
    ]
    control = tmp_path / "control.jsonl"
    control.write_bytes(b"".join(encode(c) + b"\n" for c in commands))
    out = tmp_path / "bt"
    argv = ["backtest", "--input", str(SPOT), "--control", str(control), "--out", str(out)]
    assert main([*argv, "--no-report", "--no-progress", "--param", "quoting.warmup_s=2"]) == 0
    states = read_jsonl(out / "risk_states.jsonl", RiskState)
    assert [(s.ts, s.scope, s.status) for s in states if not s.heartbeat] == [
        (halt, "global", "HALTED"),
        (resume, "global", "ACTIVE"),
    ]
    intents = read_jsonl(out / "intents.jsonl", OrderIntent)
    places = [i.ts for i in intents if i.action == "place"]
    assert any(t < halt for t in places) and any(t >= resume for t in places)
    assert not [t for t in places if halt <= t < resume]
    assert any(i.action == "cancel_all" and i.ts == halt for i in intents)
    alerts = read_jsonl(out / "alerts.jsonl", Alert)
    assert {a.name for a in alerts} >= {
        "KillSwitchEngaged",
        "KillSwitchReleased",
        "RiskLimitsChanged",
    }
    dead = read_jsonl(out / "dead_letters.jsonl", DeadLetter)
    assert [d.step for d in dead] == ["backtest.control", "backtest.control"]
    assert "must name who" in dead[0].reason
