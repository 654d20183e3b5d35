"""Live execution's checks in front of the backtest's venue: the risk gate and the sink's
fat-finger guards, on the same code and the same ``[execution]`` tables; a refusal comes
back as execution's rejected OrderEvent."""

from __future__ import annotations

from pathlib import Path

from makerflow.backtest.engine import MarketEngine, Output
from makerflow.backtest.run import FileInput, run_backtest
from makerflow.backtest.settings import BacktestConfig, load_backtest_config
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.schemas.events import BookSnapshot, ControlCommand, OrderEvent, OrderIntent
from makerflow.sinks.jsonl import read_jsonl
from tests.conftest import FIXTURES

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
S = 1_000_000_000
MARKET = "binance:BTC/USDT"


def engine() -> MarketEngine:
    market = MarketConfig(
        venue="binance", symbol="BTC/USDT", tick_size=0.01, lot_size=0.00001, min_notional=5.0
    )
    cfg = BacktestConfig(quoting=QuotingConfig(markets=(market,), defaults=QuotingParams()))
    return MarketEngine(MARKET, cfg)


def book(ts: int) -> BookSnapshot:
    return BookSnapshot(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        seq=ts,
        bids=((100.0, 5.0),),
        asks=((100.1, 5.0),),
    )


def place(ts: int, cid: str, price: float = 99.0) -> OrderIntent:
    return OrderIntent(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side="buy",
        price=price,
        qty=0.1,
        reference=100.05,
    )


def events_of(out: list[Output], cid: str) -> list[OrderEvent]:
    return [x for name, _, x in out if name == "order_events" and x.client_order_id == cid]


def test_a_place_in_a_halted_market_never_reaches_the_venue_and_comes_back_rejected() -> None:
    e = engine()
    e.feed(1 * S, book(1 * S))
    # Before the halt the gate lets a place through: the venue acks it.
    e.submit([place(1 * S, "mf-before")])
    e.feed(2 * S, book(2 * S))
    # (the quoter, which did not send it, then cancels it as an orphan)
    assert "ack" in [x.status for x in events_of(e.take(), "mf-before")]
    halt = ControlCommand(
        ts=3 * S, command="halt", scope=f"market:{MARKET}", issued_by="me", reason="test"
    )
    e.feed(3 * S, halt)
    e.take()
    # A quoting model that ignored the halt: its place is refused by the gate, as live.
    e.submit([place(3 * S, "mf-after")])
    e.feed(4 * S, book(4 * S))
    out = e.finish()
    [rej] = events_of(out, "mf-after")  # no ack, no fill: the venue never saw it
    assert rej.status == "rejected"
    assert rej.reason.startswith(f"risk_gate:halted: market:{MARKET} is HALTED: ")
    assert e.venue.fills == 0 and not any(n == "fills" for n, _, _ in out)


def test_a_place_before_risk_was_heard_is_refused_fail_closed() -> None:
    e = engine()
    e.submit([place(0, "mf-early")])
    [rej] = events_of(e.finish(), "mf-early")
    assert rej.status == "rejected" and rej.reason.startswith("risk_gate:unknown: ")


def test_a_fat_finger_place_is_refused_as_live_does() -> None:
    e = engine()
    e.feed(1 * S, book(1 * S))
    e.submit([place(1 * S, "mf-far", price=90.0)])  # 1000 bps below the reference
    [rej] = events_of(e.finish(), "mf-far")
    assert rej.status == "rejected"
    assert rej.reason.startswith("guard:max_distance: 90.0 is ")
    assert rej.reason.endswith("bps from reference 100.05 (limit 500.0)")


def test_the_checks_read_the_execution_tables_of_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "live.toml"
    # The live file's [execution] (its private stream and exchange settings are not the
    # backtest's, and are left alone): guards far tighter than the quoter's spread.
    toml.write_text(
        "[execution]\nprivate_stream = false\n"
        "[execution.gate]\nmax_state_age_ms = 5000\n"
        "[execution.sink]\nurl = 'http://127.0.0.1:1'\n"
        "[execution.sink.guards]\nmax_distance_bps = 0.01\n"
        "[quoting.defaults]\nwarmup_s = 2.0\nsigma_initial = 3.0\n"
    )
    cfg = load_backtest_config(toml)
    assert cfg.execution.guards.max_distance_bps == 0.01
    out = tmp_path / "out"
    res = run_backtest(FileInput((str(SPOT),)), cfg, out)
    intents: list[OrderIntent] = read_jsonl(out / "intents.jsonl", OrderIntent)
    events: list[OrderEvent] = read_jsonl(out / "order_events.jsonl", OrderEvent)
    placed = {i.client_order_id for i in intents if i.action == "place"}
    assert placed
    assert {e.client_order_id for e in events if e.status == "ack"} == set()
    refused = {e.client_order_id for e in events if e.reason.startswith("guard:max_distance")}
    assert refused == placed
    assert res.figures["fills"] == 0
    # Loosened by an override, the same file trades.
    loose = load_backtest_config(toml, [("execution.sink.guards.max_distance_bps", 500.0)])
    assert run_backtest(FileInput((str(SPOT),)), loose, tmp_path / "loose").figures["fills"] > 0


def test_a_gate_that_needs_fresher_states_than_risk_beats_refuses_stale_places(
    tmp_path: Path,
) -> None:
    cfg = load_backtest_config(
        None,
        [
            ("quoting.defaults.warmup_s", 2.0),
            ("quoting.defaults.sigma_initial", 3.0),
            ("execution.gate.max_state_age_ms", 1),
        ],
    )
    out = tmp_path / "stale"
    run_backtest(FileInput((str(SPOT),)), cfg, out)
    events: list[OrderEvent] = read_jsonl(out / "order_events.jsonl", OrderEvent)
    stale = [e for e in events if e.reason.startswith("risk_gate:stale: ")]
    assert stale and "(fail closed)" in stale[0].reason
    acked = {e.client_order_id for e in events if e.status == "ack"}
    assert acked.isdisjoint(e.client_order_id for e in stale)
