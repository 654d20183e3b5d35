"""The demo's pure parts: the crashed reference book, the progress tally and the services'
TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.demo.progress import Progress
from makerflow.demo.runner import demo_config
from makerflow.demo.services import services_config, services_env, to_toml
from makerflow.demo.venues import Crash, ReferenceBook
from makerflow.flows.common import FlowSettings
from makerflow.flows.execution import ExecutionConfig
from makerflow.operators.quoting_config import load_quoting_config
from makerflow.operators.risk_limits import RiskConfig
from makerflow.operators.ticks import MarketTicks, TicksConfig
from makerflow.schemas.config import load_section
from makerflow.schemas.events import BookDelta, BookSnapshot, Fill, RiskState, Tick
from makerflow.sources.web3_prices import Web3SourceConfig

NS = 1_000_000_000
V, S = "binanceusdm", "BTC/USDT:USDT"


def _snap(ts: int) -> BookSnapshot:
    return BookSnapshot(
        ts=ts, venue=V, symbol=S, seq=10, bids=((100.0, 1.0), (99.0, 2.0)), asks=((101.0, 1.0),)
    )


def _delta(ts: int, seq: int, bids=(), asks=()) -> BookDelta:  # type: ignore[no-untyped-def]
    return BookDelta(
        ts=ts,
        venue=V,
        symbol=S,
        first_seq=seq,
        last_seq=seq,
        prev_seq=seq - 1,
        bids=bids,
        asks=asks,
    )


def test_a_crash_moves_the_whole_reference_book_not_only_its_updates() -> None:
    # The recording starts at 0 and is moved to 1000 s; the crash comes 5 s into it.
    book = ReferenceBook(
        offset_ns=1_000 * NS, crash=Crash(at_s=5.0, pct=-10.0), start_ns=1_000 * NS
    )
    events = [
        _snap(1 * NS),
        _delta(2 * NS, 11, bids=((99.5, 1.0),)),
        _delta(6 * NS, 12, asks=((102.0, 3.0),)),  # the first update after the crash
        _delta(7 * NS, 13, bids=((100.0, 0.0),)),
    ]
    moved = [book.move(e) for e in events]
    assert [m.ts for m in moved] == [e.ts + 1_000 * NS for e in events]
    market = MarketTicks(V, S, TicksConfig())
    ticks = [t for m in moved for t in market.on_event(m) if isinstance(t, Tick)]
    # Before the crash the book is the recording's; after it every level is 10 % lower and
    # the book is never crossed (old levels are gone, not left standing).
    assert ticks[0].bid == 100.0 and ticks[0].ask == 101.0
    assert all(t.bid < t.ask for t in ticks)
    assert ticks[-1].bid == 89.55 and ticks[-1].ask == 90.9


def test_no_crash_only_moves_time() -> None:
    book = ReferenceBook(offset_ns=5, crash=None, start_ns=0)
    snap = _snap(1)
    assert book.move(snap) == BookSnapshot(
        ts=6, venue=V, symbol=S, seq=10, bids=snap.bids, asks=snap.asks
    )


def _fill(trade_id: str, side: str, qty: float, price: float, fee: float, asset: str) -> Fill:
    return Fill(
        ts=1,
        venue="binance",
        symbol="BTC/USDT",
        trade_id=trade_id,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        fee=fee,
        fee_asset=asset,
    )


def test_progress_counts_a_repeated_fill_once_and_fees_in_the_asset_taken() -> None:
    p = Progress(total_s=120.0)
    assert p.line(0.0).startswith("    0/120s")
    p.on_fill(_fill("1", "buy", 0.001, 60_000.0, 0.000001, "BTC"))
    p.on_fill(_fill("1", "buy", 0.001, 60_000.0, 0.000001, "BTC"))
    p.on_fill(_fill("2", "sell", 0.000999, 60_010.0, 0.0059949, "USDT"))
    p.on_tick(
        Tick(
            ts=2,
            venue="binance",
            symbol="BTC/USDT",
            reason="book",
            bid=60_000.0,
            bid_qty=1.0,
            ask=60_000.02,
            ask_qty=1.0,
            mid=60_000.01,
            microprice=60_000.01,
            spread_bps=0.0,
            imbalance=0.0,
        )
    )
    p.on_risk(RiskState(ts=3, scope="market:binance:BTC/USDT", status="ACTIVE", heartbeat=True))
    line = p.line(30.0)
    assert "fills 2" in line and "inventory +0.00000 BTC" in line
    # bought 0.001 at 60 000 (fee 0.000001 BTC = 0.06), sold 0.000999 at 60 010 (+0.01,
    # fee 0.006 USDT): flat, -0.056 USDT
    assert "PnL -0.06 USDT" in line and "risk ACTIVE" in line
    p.on_risk(RiskState(ts=4, scope="global", status="HALTED"))
    assert "risk HALTED global" in p.line(31.0)


def test_services_toml_gives_each_service_the_demos_settings(tmp_path: Path) -> None:
    cfg = demo_config("http://127.0.0.1:1")
    path = tmp_path / "services.toml"
    rpc = Web3SourceConfig(rpc_url="http://127.0.0.1:2", chain="local")
    path.write_text(to_toml(services_config("http://127.0.0.1:1", rpc)))
    assert load_section(path, "risk", RiskConfig) == cfg.risk
    assert load_quoting_config(path) == cfg.quoting
    execution = load_section(path, "execution", ExecutionConfig)
    assert execution.sink == cfg.exchange and execution.private.url == "http://127.0.0.1:1"
    assert load_section(path, "dex_ingest", Web3SourceConfig) == rpc
    # the demo's fee tier, priced in by the quoter
    assert load_quoting_config(path).defaults.maker_fee_bps == 1.0


def test_the_services_demo_waits_100_ms_per_fetch_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seven services on the embedded broker at the shipped 5 ms took half a core of it.
    monkeypatch.delenv("MAKERFLOW_KAFKA_FETCH_WAIT_MS", raising=False)
    env = services_env("127.0.0.1:1", tmp_path / "services.toml", "http://127.0.0.1:2")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = FlowSettings.from_env()
    assert settings.fetch_wait_ms == 100
    assert "127.0.0.1:1" in settings.brokers
    monkeypatch.setenv("MAKERFLOW_KAFKA_FETCH_WAIT_MS", "7")
    env = services_env("127.0.0.1:1", tmp_path / "services.toml", "http://127.0.0.1:2")
    assert env["MAKERFLOW_KAFKA_FETCH_WAIT_MS"] == "7"
