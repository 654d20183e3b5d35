"""Limits, breach onsets and the kill-switch state machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.operators.kill_switch import ScopeMachine
from makerflow.operators.risk import cancel_all_intents
from makerflow.operators.risk_limits import (
    MARKET_KINDS,
    AssetLimits,
    Breach,
    BreachTracker,
    MarketConfig,
    MarketLimits,
    PortfolioLimits,
    RiskConfig,
    apply_params,
    check_exposure,
    check_market,
    check_staleness,
)
from makerflow.operators.risk_windows import MarketMeasures
from makerflow.schemas.config import load_config
from makerflow.schemas.events import ControlCommand

SCOPE = "market:binance:BTC/USDT"


def measures(**kw) -> MarketMeasures:
    base = dict(
        market="binance:BTC/USDT",
        ts=1,
        window_start=0,
        window_end=5,
        last_price=100.0,
        realized_vol_bps=5.0,
        largest_move_bps=10.0,
        orders_submitted=0,
        reject_rate=0.0,
        cancel_rate=0.0,
        open_orders=0,
        open_notional=0.0,
        position=0.0,
        realized_pnl=0.0,
        unrealized_pnl=0.0,
        pnl=0.0,
        drawdown=0.0,
    )
    return MarketMeasures(**{**base, **kw})


def test_market_limits_name_what_was_breached():
    lim = MarketLimits(max_move_bps=500.0, max_drawdown=1_000.0, max_loss=2_000.0)
    assert check_market(measures(), lim) == ()
    got = check_market(measures(largest_move_bps=953.0, drawdown=1_500.0, pnl=-2_500.0), lim)
    assert [b.kind for b in got] == ["largest_move", "drawdown", "loss"]
    assert got[0].message == "largest move 953 bps > limit 500 bps"


def test_rates_are_judged_only_with_enough_orders():
    lim = MarketLimits(max_reject_rate=0.2, min_orders=20)
    assert check_market(measures(orders_submitted=5, reject_rate=0.8), lim) == ()
    got = check_market(measures(orders_submitted=20, reject_rate=0.25), lim)
    assert [b.kind for b in got] == ["reject_rate"]


def test_exposure_limits_both_ways():
    lim = AssetLimits(max_long=2.0, max_short=1.0)
    assert check_exposure("main", "BTC", 1.5, lim) == ()
    assert [b.kind for b in check_exposure("main", "BTC", 2.5, lim)] == ["exposure_long:main"]
    assert [b.kind for b in check_exposure("main", "BTC", -1.5, lim)] == ["exposure_short:main"]


def test_staleness_limit():
    assert check_staleness(3 * 10**9, None) == ()
    assert check_staleness(2 * 10**9, 2_000) == ()
    (b,) = check_staleness(2_500_000_000, 2_000)
    assert b.message == "market data age 2.5 s > limit 2 s"


def test_breach_tracker_reports_onsets_once_and_keeps_unjudged_kinds():
    t = BreachTracker()
    move = Breach("largest_move", 900, 500, "m")
    stale = Breach("stale", 3, 2, "s")
    assert t.onsets([move], MARKET_KINDS) == (move,)
    assert t.onsets([move], MARKET_KINDS) == ()  # persists: not again
    assert t.onsets([stale], ("stale",)) == (stale,)
    assert t.onsets([], ("stale",)) == ()  # staleness clears, the move stays active
    assert t.active == frozenset({"largest_move"})
    assert t.onsets([], MARKET_KINDS) == ()
    assert t.onsets([move], MARKET_KINDS) == (move,)  # cleared then back: a new onset


def cmd(command: str, scope: str = SCOPE, ts: int = 10, **kw) -> ControlCommand:
    return ControlCommand(ts=ts, command=command, scope=scope, issued_by="alice", **kw)


def test_breach_halts_with_alert_and_cancel_then_only_resume_reactivates():
    m = ScopeMachine(SCOPE)
    b = Breach("largest_move", 953, 500, "largest move 953 bps > limit 500 bps")
    t = m.on_breach(5, [b], {"largest_move_bps": 953.0})
    assert t is not None and t.status == "HALTED" and t.cancel_all
    assert t.reasons == (b.message,) and t.metrics == {"largest_move_bps": 953.0}
    assert t.alert is not None and t.alert[:2] == ("KillSwitchEngaged", "critical")
    assert m.on_breach(6, [b], {}) is None  # the same reason again: nothing new
    t2 = m.on_breach(7, [Breach("drawdown", 2, 1, "drawdown 2 > limit 1")], {})
    assert t2 is not None and t2.alert is None and not t2.cancel_all
    assert t2.reasons == (b.message, "drawdown 2 > limit 1")
    assert m.on_breach(8, [], {}) is None and m.status == "HALTED"  # never resumes alone
    r = m.on_command(cmd("resume", reason="checked"))
    assert r is not None and r.status == "ACTIVE" and r.reasons == ()
    assert r.alert is not None and r.alert[0] == "KillSwitchReleased" and r.alert[1] == "info"
    assert "resumed by alice: checked" in r.alert[2] and "largest move" in r.alert[2]


def test_manual_halt_and_idempotent_resume():
    m = ScopeMachine("global")
    r = m.on_command(cmd("resume", "global"))
    assert r is not None and r.status == "ACTIVE" and r.alert is None
    h = m.on_command(cmd("halt", "global", reason="exchange incident"))
    assert h is not None and h.status == "HALTED" and h.cancel_all
    assert h.reasons == ("manual halt by alice: exchange incident",)
    again = m.on_command(cmd("halt", "global"))
    assert again is not None and again.alert is None and again.cancel_all
    assert ScopeMachine.restore("global", m.snapshot()).status == "HALTED"
    assert m.on_command(cmd("set_params", "global")) is None


def test_apply_params():
    lim = MarketLimits(max_move_bps=500.0)
    assert apply_params(lim, {"max_move_bps": 800}).max_move_bps == 800.0
    assert apply_params(lim, {"max_move_bps": "off"}).max_move_bps is None
    assert apply_params(PortfolioLimits(), {"max_loss": "250.5"}).max_loss == 250.5
    with pytest.raises(ValueError, match="unknown limit 'max_mvoe_bps'"):
        apply_params(lim, {"max_mvoe_bps": 1})
    with pytest.raises(ValueError, match="bad limit value"):
        apply_params(lim, {"min_orders": "many"})


def test_config_from_toml_and_scope_coverage(tmp_path: Path):
    p = tmp_path / "risk.toml"
    p.write_text(
        "window_ms = 30000\nslide_ms = 30000\n"
        '[[markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\n'
        "[markets.limits]\nmax_move_bps = 300.0\n"
        '[[markets]]\nvenue = "binance"\nsymbol = "ETH/USDT"\naccount = "hedge"\n'
        "[assets.BTC]\nmax_long = 3.0\n"
        "[accounts.main]\nmax_drawdown = 5000.0\n"
    )
    cfg = load_config(p, RiskConfig)
    assert cfg.market_limits("binance:BTC/USDT").max_move_bps == 300.0
    assert cfg.market_limits("kraken:XBT/EUR") == cfg.default_market_limits
    assert cfg.portfolio_limits("account:main").max_drawdown == 5000.0
    assert [m.symbol for m in cfg.markets_in_scope("asset:USDT")] == ["BTC/USDT", "ETH/USDT"]
    assert [m.symbol for m in cfg.markets_in_scope("account:hedge")] == ["ETH/USDT"]
    assert cfg.markets_in_scope("asset:SOL") == ()
    p.write_text("window_ms = 30000\nslide_ms = 7000\n")
    with pytest.raises(ValueError, match="multiple of"):
        load_config(p, RiskConfig)
    p.write_text("max_mvoe = 1\n")
    with pytest.raises(ValueError, match="max_mvoe"):
        load_config(p, RiskConfig)


def test_cancel_all_intents_cover_the_scope():
    cfg = RiskConfig(
        markets=(
            MarketConfig(venue="binance", symbol="BTC/USDT"),
            MarketConfig(venue="binance", symbol="ETH/USDT"),
            MarketConfig(venue="okx", symbol="BTC/USDC", account="okx-main"),
        )
    )
    got = cancel_all_intents(cfg, "asset:BTC", 7, ("why",))
    assert [(i.venue, i.symbol, i.account, i.action, i.ts) for i in got] == [
        ("binance", "BTC/USDT", "main", "cancel_all", 7),
        ("okx", "BTC/USDC", "okx-main", "cancel_all", 7),
    ]
    assert len(cancel_all_intents(cfg, "global", 7, ())) == 3
    # A market that is not configured is still canceled when its own scope halts.
    (one,) = cancel_all_intents(cfg, "market:kraken:XBT/EUR", 7, ())
    assert (one.venue, one.symbol) == ("kraken", "XBT/EUR")


def test_the_documented_example_config_loads(tmp_path: Path):
    example = RiskConfig.__doc__.split("::", 1)[1].split("A limit left out", 1)[0]
    p = tmp_path / "risk.toml"
    p.write_text("\n".join(line.strip() for line in example.splitlines()))
    cfg = load_config(p, RiskConfig)
    assert cfg.market_limits("binance:BTC/USDT").max_data_age_ms == 5_000
    assert cfg.assets["BTC"] == AssetLimits(max_long=5.0, max_short=5.0)
    assert cfg.basket_limits("BTC").halt_scope == "asset:BTC"
