"""Risk inside the backtest's loop: the market stage and the scopes' machines, as live."""

from __future__ import annotations

from makerflow.backtest.risk import RiskStage
from makerflow.operators.risk_limits import MarketLimits, RiskConfig
from makerflow.operators.ticks import book_tick
from makerflow.schemas.events import ControlCommand, DataQuality

S = 1_000_000_000


def tick(ts: int, bid: float = 100.0, ask: float = 100.1):  # type: ignore[no-untyped-def]
    return book_tick("binance", "BTC/USDT", ts, bid, 1.0, ask, 1.0)


def test_an_invalid_book_pauses_the_market_until_a_good_top() -> None:
    r = RiskStage("binance", "BTC/USDT", "main", RiskConfig())
    r.on_tick(tick(1 * S))
    [t] = r.on_quality(
        DataQuality(ts=2 * S, venue="binance", symbol="BTC/USDT", kind="gap", detail="ids")
    )
    assert (t.scope, t.status, t.cancel_all) == ("market:binance:BTC/USDT", "PAUSED", True)
    assert (
        r.on_quality(
            DataQuality(ts=2 * S, venue="binance", symbol="BTC/USDT", kind="gap", detail="again")
        )
        == []
    )
    [back] = [x for x in r.on_tick(tick(2 * S + 1)) if not x.heartbeat]
    assert back.status == "ACTIVE"


def test_every_scope_of_the_market_beats_once_a_period() -> None:
    r = RiskStage("binance", "BTC/USDT", "main", RiskConfig(state_heartbeat_ms=1000))
    beats = [t for i in range(30) for t in r.on_tick(tick(i * S // 10)) if t.heartbeat]
    scopes = {t.scope for t in beats}
    assert scopes == {
        "global",
        "account:main",
        "asset:BTC",
        "asset:USDT",
        "market:binance:BTC/USDT",
    }
    assert len(beats) == 3 * len(scopes)  # periods 0, 1 and 2


def test_a_resume_is_refused_while_the_breach_holds() -> None:
    cfg = RiskConfig(default_market_limits=MarketLimits(max_move_bps=10.0))
    r = RiskStage("binance", "BTC/USDT", "main", cfg)
    r.on_tick(tick(1 * S))
    halted = [t for t in r.on_tick(tick(2 * S, 110.0, 110.1)) if not t.heartbeat]
    assert [t.status for t in halted] == ["HALTED"] and halted[0].cancel_all
    cmd = ControlCommand(
        ts=3 * S, command="resume", scope="market:binance:BTC/USDT", issued_by="me", reason="ok"
    )
    [again], _, problem = r.on_command(cmd)
    assert problem == "" and again.status == "HALTED"  # still breached: halted again at once
