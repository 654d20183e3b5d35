"""The risk operator in a Bytewax flow, on real recorded ticks, under run_main and under
cluster_main with one and two workers.

Every input goes through ONE TestingSource in event-time order and is split by type, and the
flow runs with a zero epoch interval, so each source batch is its own epoch: a resume command
placed after a jump reaches the kill switch after the halt the jump caused, on any number of
workers (Bytewax's stateful steps take epochs in order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import msgspec
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY

from makerflow.operators.risk import risk_op
from makerflow.operators.risk_limits import (
    AssetLimits,
    BasketLimits,
    MarketConfig,
    MarketLimits,
    RiskConfig,
)
from makerflow.operators.staleness import Heartbeat
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DataQuality,
    DeadLetter,
    Fill,
    IndexPrice,
    OrderEvent,
    OrderIntent,
    RiskState,
    Tick,
)
from tests.conftest import RUNNERS
from tests.risk_support import SYMBOL, VENUE, recorded_ticks, with_jump

NS = 1_000_000_000
BTC_SCOPE = f"market:{VENUE}:{SYMBOL}"


@pytest.fixture(params=list(RUNNERS))
def runner(request: pytest.FixtureRequest) -> Callable[[Dataflow], None]:
    return RUNNERS[request.param]


def config(**kw: Any) -> RiskConfig:
    markets = (
        MarketConfig(
            venue=VENUE,
            symbol=SYMBOL,
            index_basket="BTC",
            limits=MarketLimits(max_move_bps=500.0, max_data_age_ms=2_000),
        ),
        MarketConfig(venue=VENUE, symbol="ETH/USDT"),
        MarketConfig(venue="okx", symbol="BTC/USDC"),
    )
    return RiskConfig(window_ms=60_000, slide_ms=5_000, markets=markets, **kw)


class Outputs:
    def __init__(self) -> None:
        self.all_states: list[RiskState] = []
        self.alerts: list[Alert] = []
        self.intents: list[OrderIntent] = []
        self.errs: list[DeadLetter] = []
        self.audit: list[Alert] = []

    @property
    def states(self) -> list[RiskState]:
        """The changes of state (the heartbeats repeat them)."""
        return changes(self.all_states)


def changes(states: list[RiskState]) -> list[RiskState]:
    return [s for s in states if not s.heartbeat]


def run_risk(events: list[Any], cfg: RiskConfig, runner: Callable[[Dataflow], None]) -> Outputs:
    flow = Dataflow("risk_test")
    src = op.input("inp", flow, TestingSource(events, batch_size=500))

    def only(name: str, kind: type) -> Any:
        return op.filter(name, src, lambda x: isinstance(x, kind))

    out = risk_op(
        "risk",
        only("ticks", Tick),
        only("index", IndexPrice),
        only("fills", Fill),
        only("orders", OrderEvent),
        only("balances", BalanceSnapshot),
        only("control", ControlCommand),
        cfg,
        clock=only("clock", Heartbeat),
        quality=only("quality", DataQuality),
    )
    o = Outputs()
    op.output("states", out.states, TestingSink(o.all_states))
    op.output("alerts", out.alerts, TestingSink(o.alerts))
    op.output("intents", out.intents, TestingSink(o.intents))
    op.output("errs", out.errs, TestingSink(o.errs))
    op.output("audit", out.audit, TestingSink(o.audit))
    runner(flow)
    return o


def gauge(scope: str) -> float:
    return sample("makerflow_kill_switch_engaged", scope=scope)


def sample(name: str, **labels: str) -> float:
    """A metric's value as the /metrics endpoint would show it."""
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def command(ts: int, cmd: str, scope: str, **kw: Any) -> ControlCommand:
    return ControlCommand(ts=ts, command=cmd, scope=scope, issued_by="test", **kw)  # type: ignore[arg-type]


def test_jump_halts_within_one_window_then_resume_reactivates(runner):
    ticks = recorded_ticks()
    at = 8_000
    jumped = with_jump(ticks, at)
    # 70 s after the jump (13 300 - 8 000 ticks): the 60 s window has rolled past it, so the
    # breach no longer holds and the resume stands.
    resume_at = 13_300
    resume = command(jumped[resume_at].ts + 1, "resume", BTC_SCOPE, reason="checked the move")
    events = [*jumped[:resume_at], resume, *jumped[resume_at:]]
    cfg = config()

    o = run_risk(events, cfg, runner)

    assert [s.status for s in o.states] == ["HALTED", "ACTIVE"]
    halted, active = o.states
    assert halted.scope == BTC_SCOPE
    assert halted.ts - jumped[at].ts < cfg.window_ms * 1_000_000
    assert any("largest move" in r for r in halted.reasons)
    assert halted.metrics["largest_move_bps"] > 900
    # The scope's clock never goes back: the resume is stamped no earlier than what it saw.
    assert active.ts >= resume.ts and active.reasons == ()
    # Cancel-all for exactly the markets of the halted scope (not ETH/USDT, not okx).
    assert [(i.venue, i.symbol, i.action) for i in o.intents] == [(VENUE, SYMBOL, "cancel_all")]
    names = [(a.name, a.severity, a.scope) for a in o.alerts]
    assert names == [
        ("KillSwitchEngaged", "critical", BTC_SCOPE),
        ("KillSwitchReleased", "info", BTC_SCOPE),
    ]
    assert gauge(BTC_SCOPE) == 0
    assert o.errs == []


def test_jump_without_resume_leaves_the_kill_switch_engaged(runner):
    ticks = recorded_ticks(limit=6_000)
    o = run_risk(with_jump(ticks, 4_000), config(), runner)
    assert [(s.scope, s.status) for s in o.states] == [(BTC_SCOPE, "HALTED")]
    assert gauge(BTC_SCOPE) == 1
    # Never resumes on its own, although the window rolls past the jump.


def test_calm_real_data_does_not_halt(runner):
    o = run_risk(recorded_ticks(), config(), runner)
    assert o.states == [] and o.alerts == [] and o.intents == []


def fill(ts: int, i: int, qty: float, price: float, symbol: str = SYMBOL) -> Fill:
    return Fill(
        ts=ts,
        venue=VENUE,
        symbol=symbol,
        trade_id=f"t{i}",
        side="buy",
        price=price,
        qty=qty,
        fee=qty * price * 0.001,
        fee_asset="USDT",
    )


def test_exposure_breach_from_fills_halts_the_asset(runner):
    ticks = recorded_ticks(limit=2_000)
    t0 = ticks[0].ts
    balance = BalanceSnapshot(ts=t0, venue=VENUE, asset="BTC", free=0.5, total=0.5)
    fills = [fill(ticks[500 * k].ts + 1, k, 0.3, ticks[500 * k].mid) for k in range(1, 4)]
    events = sorted([*ticks, balance, *fills], key=lambda e: e.ts)
    cfg = config(assets={"BTC": AssetLimits(max_long=1.2)})

    o = run_risk(events, cfg, runner)

    # 0.5 + 0.3 + 0.3 = 1.1 is within the limit; the third fill (1.4) breaches it.
    assert [(s.scope, s.status) for s in o.states] == [("asset:BTC", "HALTED")]
    # The breach's own event time; the state's ts is the scope's clock (never backwards).
    assert o.states[0].since == fills[2].ts <= o.states[0].ts
    assert "main BTC exposure 1.4 > limit 1.2" in o.states[0].reasons
    assert sorted((i.venue, i.symbol) for i in o.intents) == [(VENUE, SYMBOL), ("okx", "BTC/USDC")]
    assert sample("makerflow_exposure", account="main", asset="BTC") == pytest.approx(1.4)
    assert gauge("asset:BTC") == 1


def test_a_fill_delivered_twice_counts_once_in_exposure(runner):
    # Found on main: one 0.5 fill seen twice gave 1.0 in ExposureBook.on_leg.
    ticks = recorded_ticks(limit=1_000)
    t0 = ticks[0].ts
    balance = BalanceSnapshot(ts=t0, venue=VENUE, asset="BTC", free=0.5, total=0.5)
    once = fill(ticks[500].ts + 1, 1, 0.5, ticks[500].mid)
    events = sorted([*ticks, balance, once], key=lambda e: e.ts)
    events.insert(events.index(ticks[700]), once)  # redelivered later, after a reconnect
    cfg = config(assets={"BTC": AssetLimits(max_long=1.2)})

    o = run_risk(events, cfg, runner)

    assert [(s.scope, s.status) for s in o.states] == []  # 1.0 <= 1.2: no halt
    assert sample("makerflow_exposure", account="main", asset="BTC") == pytest.approx(1.0)


def test_stale_feed_halts_the_market(runner):
    ticks = recorded_ticks(limit=1_000)
    last = ticks[-1].ts
    beats = [Heartbeat(last + k * NS // 2) for k in range(1, 9)]  # up to 4 s of silence
    o = run_risk([*ticks, *beats], config(), runner)
    assert [(s.scope, s.status) for s in o.states if s.status == "HALTED"] == [
        (BTC_SCOPE, "HALTED")
    ]
    # The markets that never sent data are paused (quotes pulled), not halted.
    paused = {s.scope for s in o.states if s.status == "PAUSED"}
    assert paused == {f"market:{VENUE}:ETH/USDT", "market:okx:BTC/USDC"}
    halted = next(s for s in o.states if s.status == "HALTED")
    assert halted.since == last + 5 * NS // 2  # the first heartbeat past 2 s
    assert "market data age 2.5 s > limit 2 s" in halted.reasons
    assert sorted(i.symbol for i in o.intents) == sorted([SYMBOL, "ETH/USDT", "BTC/USDC"])


def index_price(ts: int, price: float, oracle: float) -> IndexPrice:
    return IndexPrice(
        ts=ts, basket="BTC", quote="USD", price=price, constituents=(), oracle_price=oracle
    )


def test_oracle_deviation_halts_the_configured_scope(runner):
    ticks = recorded_ticks(limit=1_000)
    t = ticks[-1].ts
    events = [
        *ticks,
        index_price(t + 1, 61_800.0, 61_790.0),  # 1.6 bps: fine
        index_price(t + 2, 61_800.0, 60_300.0),  # 249 bps off the oracle
    ]
    cfg = config(baskets={"BTC": BasketLimits(max_oracle_deviation_bps=100.0)})
    o = run_risk(events, cfg, runner)
    assert [(s.scope, s.status) for s in o.states] == [("global", "HALTED")]
    assert "index BTC vs oracle deviation" in o.states[0].reasons[0]
    assert len(o.intents) == 3  # every configured market
    assert sample("makerflow_index_oracle_deviation_bps", basket="BTC") == pytest.approx(
        (61_800 / 60_300 - 1) * 1e4
    )


def test_manual_halt_set_params_and_bad_commands(runner):
    ticks = recorded_ticks(limit=1_500)
    t = ticks[600].ts
    events = [
        *ticks[:600],
        command(t, "halt", "account:main", reason="maintenance"),
        command(t, "set_params", BTC_SCOPE, params={"max_move_bps": 1.0}),
        command(t, "set_params", BTC_SCOPE, params={"no_such_limit": 1.0}),
        command(t, "resume", "market:nonsense"),
        *ticks[600:],
    ]
    o = run_risk(events, config(), runner)
    by_scope = {(s.scope, s.status) for s in o.states}
    assert ("account:main", "HALTED") in by_scope
    # The lowered move limit (1 bp) halts the market on the next ticks.
    assert (BTC_SCOPE, "HALTED") in by_scope
    assert {a.name for a in o.alerts} >= {"KillSwitchEngaged", "RiskLimitsChanged"}
    reasons = sorted(e.reason for e in o.errs)
    assert len(reasons) == 2
    assert "unknown limit 'no_such_limit'" in reasons[1] or "unknown limit" in reasons[0]
    assert any("bad scope" in r for r in reasons)


def test_halt_stops_the_quoter_and_resume_restores_quoting(runner):
    """risk_op's states feed the quoting engineer's quoting_op, as in the all-in-one flow:
    the quoter stops placing orders on the halt and places again after the resume."""
    from makerflow.operators.quoting import quoting_op
    from makerflow.operators.quoting_config import MarketConfig as QuotedMarket
    from makerflow.operators.quoting_config import QuotingConfig, QuotingParams

    ticks = recorded_ticks(limit=4_000)
    # A 10 s window: the jump has left it (so no breach holds) when the resume comes, 15 s on.
    at, resume_at = 2_000, 3_000
    jumped = with_jump(ticks, at)
    resume = command(jumped[resume_at].ts + 1, "resume", BTC_SCOPE, reason="checked")
    events = [*jumped[:resume_at], resume, *jumped[resume_at:]]
    quoting = QuotingConfig(
        markets=(
            QuotedMarket(
                venue=VENUE,
                symbol=SYMBOL,
                tick_size=0.01,
                lot_size=0.00001,
                min_qty=0.00001,
                min_notional=5.0,
            ),
        ),
        # No venue answers in this flow: lift the bound on orders nobody has closed.
        defaults=QuotingParams(
            warmup_s=0.0,
            sigma_initial=4.0,
            min_quote_lifetime_s=0.0,
            max_unresolved_orders=100_000,
        ),
        id_namespace="risktest",
    )

    flow = Dataflow("risk_quoting")
    src = op.input("inp", flow, TestingSource(events, batch_size=500))
    ticks_s = op.filter("ticks", src, lambda x: isinstance(x, Tick))
    control_s = op.filter("control", src, lambda x: isinstance(x, ControlCommand))
    none: Any = op.filter("none", src, lambda x: False)
    short = msgspec.structs.replace(config(), window_ms=10_000, slide_ms=1_000)
    risk = risk_op("risk", ticks_s, none, none, none, none, control_s, short)
    quoted = quoting_op("quoting", ticks_s, none, risk.states, none, none, control_s, quoting)
    states: list[RiskState] = []
    intents: list[OrderIntent] = []
    op.output("states", risk.states, TestingSink(states))
    op.output("intents", quoted.intents, TestingSink(intents))
    runner(flow)

    assert [s.status for s in changes(states)] == ["HALTED", "ACTIVE"]
    places = [i.ts for i in intents if i.action == "place"]
    assert any(ts < jumped[at].ts for ts in places)  # it quoted before the jump
    # From the epoch after the halt until the resume: no new orders, and its orders canceled.
    halted_from, resumed = jumped[at + 500].ts, resume.ts
    assert not [ts for ts in places if halted_from <= ts < resumed]
    assert any(i.action == "cancel" and i.ts >= jumped[at].ts for i in intents)
    assert any(ts > resumed for ts in places)  # quoting restored


def test_a_halt_survives_a_crash_and_only_the_resume_command_lifts_it(tmp_path):
    """With Bytewax recovery, a crash after the halt and a restart keep the scope HALTED
    (no second halt, no resume of its own); the resume command after the restart lifts the
    halt the first run recorded."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    # The resume comes after the jump left the 60 s window (a resume while it holds would
    # halt again).
    ticks = with_jump(recorded_ticks(limit=7_600), 2_000)
    resume = command(ticks[-1].ts + 1, "resume", BTC_SCOPE, reason="checked")
    events = [*ticks[:2_500], TestingSource.ABORT(), *ticks[2_500:], resume]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))

    def run(flow: Dataflow) -> None:
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)

    first = run_risk(events, config(), run)
    second = run_risk(events, config(), run)
    assert [s.status for s in first.states] == ["HALTED"]
    assert [s.status for s in second.states] == ["ACTIVE"]
    (released,) = second.alerts
    assert released.name == "KillSwitchReleased"
    assert "was halted for: largest move" in released.message


def test_order_rejects_halt_the_market_and_account_loss_halts_the_account(runner):
    from makerflow.operators.risk_limits import PortfolioLimits

    ticks = recorded_ticks(limit=3_000)
    t = ticks[1_000].ts

    def ev(i: int, status: str) -> OrderEvent:
        return OrderEvent(
            ts=t + i,
            venue=VENUE,
            symbol="ETH/USDT",
            client_order_id=f"o{i}",
            status=status,
            side="buy",
            price=2_500.0,
            qty=1.0,
        )  # type: ignore[arg-type]

    # ETH/USDT: 30 orders, 12 rejected (40 % > 20 %, judged from 20 orders on).
    orders = [ev(i, "rejected" if i % 5 < 2 else "new") for i in range(30)]
    # BTC/USDT: bought 2 BTC at 1 % over the mid: an immediate loss of about 1 240 USDT.
    buy = Fill(
        ts=t + 100,
        venue=VENUE,
        symbol=SYMBOL,
        trade_id="x",
        side="buy",
        price=ticks[1_000].mid * 1.01,
        qty=2.0,
    )
    events = sorted([*ticks, *orders, buy], key=lambda e: e.ts)
    markets = (
        MarketConfig(venue=VENUE, symbol=SYMBOL),
        MarketConfig(
            venue=VENUE, symbol="ETH/USDT", limits=MarketLimits(max_reject_rate=0.2, min_orders=20)
        ),
    )
    cfg = RiskConfig(markets=markets, accounts={"main": PortfolioLimits(max_loss=1_000.0)})

    o = run_risk(events, cfg, runner)

    halts = {s.scope: s for s in o.states if s.status == "HALTED"}
    assert set(halts) == {f"market:{VENUE}:ETH/USDT", "account:main"}
    eth = halts[f"market:{VENUE}:ETH/USDT"]
    assert eth.reasons == ("order reject rate 0.4 > limit 0.2",)
    assert eth.since == orders[19].ts  # the 20th order is the first judged
    assert "loss" in halts["account:main"].reasons[0]
    assert sample("makerflow_pnl", scope="account:main") < -1_000
    assert sample("makerflow_open_order_notional", market=f"{VENUE}:ETH/USDT") == (
        pytest.approx(18 * 2_500.0)
    )


# --- issue 11: limits that hold, states that are heard, pauses ------------------------------


def test_a_resume_while_the_breach_still_holds_halts_again_at_once(runner):
    """Found on main: after a resume, a breach that still held never halted again (the
    trackers report onsets only). Now the resume is refused at once, with the reason."""
    ticks = recorded_ticks()
    at = 8_000
    jumped = with_jump(ticks, at)
    resume_at = at + 1_500  # the 10 % jump is still inside the 60 s window
    resume = command(jumped[resume_at].ts + 1, "resume", BTC_SCOPE, reason="looked fine")
    o = run_risk([*jumped[:resume_at], resume, *jumped[resume_at:]], config(), runner)

    btc = [s for s in o.states if s.scope == BTC_SCOPE]
    assert [s.status for s in btc] == ["HALTED", "HALTED"]
    again = btc[1]
    assert again.since == resume.ts
    assert any("largest move" in r for r in again.reasons)
    engaged = [a for a in o.alerts if a.name == "KillSwitchEngaged"]
    assert len(engaged) == 2
    assert "resume of market:binance:BTC/USDT by test: looked fine refused" in engaged[1].message
    assert "largest move" in engaged[1].message
    # Its markets are cancelled again, and nothing reads ACTIVE in between.
    assert [i.action for i in o.intents] == ["cancel_all", "cancel_all"]
    after = [s for s in o.all_states if s.scope == BTC_SCOPE and s.ts > jumped[at + 500].ts]
    assert after and all(s.status == "HALTED" for s in after)
    assert gauge(BTC_SCOPE) == 1


def test_a_resume_must_name_who_and_why_and_every_command_is_audited(runner):
    ticks = recorded_ticks(limit=1_500)
    t = ticks[600].ts
    halt = command(t, "halt", BTC_SCOPE, reason="exchange incident")
    anonymous = ControlCommand(ts=t + 1, command="resume", scope=BTC_SCOPE, reason="ok")
    no_reason = command(t + 2, "resume", BTC_SCOPE)
    proper = command(t + 3, "resume", BTC_SCOPE, reason="incident over")
    o = run_risk([*ticks[:600], halt, anonymous, no_reason, proper, *ticks[600:]], config(), runner)
    assert [s.status for s in o.states if s.scope == BTC_SCOPE] == ["HALTED", "ACTIVE"]
    refused = sorted(e.reason for e in o.errs)
    assert len(refused) == 2 and all("must name who (issued_by) and why" in r for r in refused)
    trail = [(a.labels["command"], a.labels["issued_by"], a.labels["reason"]) for a in o.audit]
    assert sorted(trail) == [
        ("halt", "test", "exchange incident"),
        ("resume", "test", "incident over"),
    ]


def test_every_scope_state_is_published_at_start_and_every_period(runner):
    """Found on main: RiskState only on transitions, so a consumer that starts after a halt
    (MAKERFLOW_FROM=end) believed the scope ACTIVE. Now every scope is published at the
    first event and again every ``state_heartbeat_ms`` of event time."""
    ticks = recorded_ticks(limit=6_000)
    jumped = with_jump(ticks, 1_000)
    o = run_risk(jumped, config(state_heartbeat_ms=1_000), runner)
    scopes = {s.scope for s in o.all_states}
    assert {"global", "account:main", "asset:BTC", "asset:USDT", BTC_SCOPE} <= scopes
    first = {s.scope: s for s in reversed(o.all_states)}
    assert all(s.ts <= ticks[0].ts + NS for s in first.values())  # heard at the start
    # A consumer that starts late, anywhere after the halt, hears HALTED within a period.
    btc = sorted((s for s in o.all_states if s.scope == BTC_SCOPE), key=lambda s: s.ts)
    halted_at = next(s.ts for s in btc if s.status == "HALTED")
    late = [s for s in btc if s.ts > halted_at]
    assert late and all(s.status == "HALTED" and s.heartbeat for s in late)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(btc)]
    assert max(gaps) <= 2 * NS  # a 1 s period, ticks at least every second in this data
    for scope in ("global", "asset:USDT"):
        ts = sorted(s.ts for s in o.all_states if s.scope == scope)
        assert (ts[-1] - ts[0]) / NS > 0.8 * (ticks[-1].ts - ticks[0].ts) / NS
        assert len(ts) >= (ticks[-1].ts - ticks[0].ts) // NS - 1


def test_stale_data_pauses_the_market_and_fresh_data_restores_it(runner):
    """Staleness is on by default (``pause_data_age_ms`` 3 s): silence pauses the market
    (a cancel-all, PAUSED read by the quoter and the gate) and data restores it by itself."""
    ticks = recorded_ticks(limit=2_000)
    head, tail = ticks[:1_000], ticks[1_000:]
    silence = tail[0].ts - head[-1].ts
    shift = 5 * NS - silence  # make a 5 s hole in the feed
    tail = [msgspec.structs.replace(t, ts=t.ts + shift) for t in tail]
    # 500 readings every 10 ms: exactly one source batch, so one epoch of silence on any
    # number of workers (within an epoch, streams interleave freely).
    beats = [Heartbeat(head[-1].ts + k * NS // 100) for k in range(1, 501)]
    cfg = RiskConfig(markets=(MarketConfig(venue=VENUE, symbol=SYMBOL),))
    assert cfg.markets[0].limits.pause_data_age_ms == 3_000
    o = run_risk([*head, *beats, *tail], cfg, runner)
    btc = [s for s in o.states if s.scope == BTC_SCOPE]
    assert [s.status for s in btc] == ["PAUSED", "ACTIVE"]
    assert btc[0].since == head[-1].ts + 301 * NS // 100  # the first reading past 3 s
    assert "pause limit 3 s" in btc[0].reasons[0]
    assert [(i.action, i.symbol) for i in o.intents] == [("cancel_all", SYMBOL)]
    assert [a.name for a in o.alerts] == ["QuotesPaused", "QuotesRestored"]
    assert gauge(BTC_SCOPE) == 0  # a pause is not the kill switch


def test_an_invalid_book_pauses_the_market_until_good_ticks_come_back(runner):
    ticks = recorded_ticks(limit=1_500)
    gap = DataQuality(
        ts=ticks[999].ts + 1, venue=VENUE, symbol=SYMBOL, kind="gap", detail="expected 7"
    )
    # The gap in a batch of its own, then 500 ticks of a good book.
    filler = [Heartbeat(ticks[0].ts) for _ in range(499)]
    o = run_risk([*ticks[:1_000], gap, *filler, *ticks[1_000:]], config(), runner)
    btc = [s for s in o.states if s.scope == BTC_SCOPE]
    assert [s.status for s in btc] == ["PAUSED", "ACTIVE"]
    assert btc[0].reasons == ("book invalid (gap): expected 7",)
    assert [i.action for i in o.intents] == ["cancel_all"]


def test_stale_data_pulls_the_quoters_quotes_and_fresh_data_restores_them(runner):
    """Found on main: staleness was off by default and the quoter has no timer, so when the
    ticks stopped its quotes kept resting at old prices. Now risk (which has the clock)
    pauses the market: the quoter cancels its orders and quotes again once data is fresh."""
    from makerflow.operators.quoting import quoting_op
    from makerflow.operators.quoting_config import MarketConfig as QuotedMarket
    from makerflow.operators.quoting_config import QuotingConfig, QuotingParams

    ticks = recorded_ticks(limit=4_000)
    head, tail = ticks[:3_000], ticks[3_000:]
    shift = 5 * NS - (tail[0].ts - head[-1].ts)
    tail = [msgspec.structs.replace(t, ts=t.ts + shift) for t in tail]
    beats = [Heartbeat(head[-1].ts + k * NS // 100) for k in range(1, 501)]  # one batch
    events = [*head, *beats, *tail]
    quoting = QuotingConfig(
        markets=(
            QuotedMarket(
                venue=VENUE,
                symbol=SYMBOL,
                tick_size=0.01,
                lot_size=0.00001,
                min_qty=0.00001,
                min_notional=5.0,
            ),
        ),
        # No venue answers in this flow: lift the bound on orders nobody has closed.
        defaults=QuotingParams(
            warmup_s=0.0,
            sigma_initial=4.0,
            min_quote_lifetime_s=0.0,
            max_unresolved_orders=100_000,
        ),
        id_namespace="pausetest",
    )
    flow = Dataflow("risk_quoting_pause")
    src = op.input("inp", flow, TestingSource(events, batch_size=500))
    ticks_s = op.filter("ticks", src, lambda x: isinstance(x, Tick))
    clock_s = op.filter("clock", src, lambda x: isinstance(x, Heartbeat))
    none: Any = op.filter("none", src, lambda x: False)
    cfg = RiskConfig(markets=(MarketConfig(venue=VENUE, symbol=SYMBOL),))
    risk = risk_op("risk", ticks_s, none, none, none, none, none, cfg, clock=clock_s)
    quoted = quoting_op("quoting", ticks_s, none, risk.states, none, none, none, quoting)
    states: list[RiskState] = []
    intents: list[OrderIntent] = []
    op.output("states", risk.states, TestingSink(states))
    op.output("intents", quoted.intents, TestingSink(intents))
    runner(flow)

    btc = [s for s in changes(states) if s.scope == BTC_SCOPE]
    assert [s.status for s in btc] == ["PAUSED", "ACTIVE"]
    paused_at = btc[0].since
    assert paused_at - head[-1].ts <= 3 * NS + NS // 100  # within the bound: limit + a beat
    places = [i.ts for i in intents if i.action == "place"]
    assert any(ts < head[-1].ts for ts in places)  # it quoted before the feed stopped
    pulled = [i for i in intents if i.action in ("cancel", "cancel_all") and i.ts >= paused_at]
    assert pulled and all("PAUSED" in i.reason for i in pulled[:1])
    assert not [ts for ts in places if paused_at <= ts < tail[0].ts]
    assert any(ts >= tail[0].ts for ts in places)  # quoting restored with fresh data
