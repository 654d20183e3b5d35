"""A bounded risk flow's later stages release on the earlier stages' end markers.

The accounts, ``global`` and the scopes' kill switches merge what several markets' stages
say in event time (``risk_op(..., bounded=True)``); each stage key says it has ended once
its inputs have, so the next stage goes on before the end of the whole input. Here the
input ends with every topic's end marker and then aborts (no end of input): every state
of the full run is already out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.risk import risk_op
from makerflow.operators.risk_limits import MarketConfig, MarketLimits, PortfolioLimits, RiskConfig
from makerflow.operators.risk_stages import OTHER, later_inputs
from makerflow.schemas import topics as t
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DataQuality,
    Fill,
    IndexPrice,
    OrderEvent,
    OrderIntent,
    RiskState,
    Tick,
)
from makerflow.schemas.markers import InputEnded
from tests.risk_support import recorded_ticks, with_jump

TOPICS = {
    t.TICKS.name: Tick,
    t.INDEX.name: IndexPrice,
    t.FILLS.name: Fill,
    t.ORDER_EVENTS.name: OrderEvent,
    t.BALANCES.name: BalanceSnapshot,
    t.CONTROL.name: ControlCommand,
    t.MD_QUALITY.name: DataQuality,
}

CONFIG = RiskConfig(
    window_ms=2_000,
    slide_ms=200,
    markets=tuple(
        MarketConfig(venue="binance", symbol=s, limits=MarketLimits(max_move_bps=5_000.0))
        for s in ("BTC/USDT", "SOL/USDT")
    ),
    accounts={"main": PortfolioLimits(max_drawdown=60.0)},
    global_limits=PortfolioLimits(max_loss=100.0),
)


class Outputs(NamedTuple):
    states: list[RiskState]
    alerts: list[Alert]
    intents: list[OrderIntent]


def two_markets() -> list[Any]:
    btc = with_jump(recorded_ticks(600), at=300, factor=0.9)
    sol = [
        msgspec.structs.replace(
            tk,
            ts=tk.ts + 1,
            symbol="SOL/USDT",
            bid=tk.bid / 15,
            ask=tk.ask / 15,
            mid=tk.mid / 15,
            microprice=tk.microprice / 15,
        )
        for tk in with_jump(recorded_ticks(600), at=400, factor=0.9)
    ]
    fills = [
        Fill(
            ts=tk.ts,
            venue="binance",
            symbol=tk.symbol,
            trade_id=f"{tk.symbol}{i}",
            side="buy",
            price=tk.ask,
            qty=qty,
        )
        for ticks, qty in ((btc, 0.01), (sol, 0.15))
        for i, tk in enumerate(ticks)
        if i % 100 == 0
    ]
    return sorted([*btc, *sol, *fills], key=lambda e: e.ts)


def run(events: list[Any], config: RiskConfig = CONFIG) -> Outputs:
    """``events`` (and :class:`InputEnded` markers: each goes to its ``topic``'s input)
    through a bounded ``risk_op`` under ``run_main``."""
    flow = Dataflow("risk_ends")
    src = op.input("inp", flow, TestingSource(events, batch_size=100))

    def read(topic: str) -> Any:
        kind = TOPICS[topic]
        return op.filter(
            f"only_{topic.replace('.', '_')}",
            src,
            lambda x: isinstance(x, kind) or (type(x) is InputEnded and x.topic == topic),
        )

    out = risk_op(
        "risk",
        read(t.TICKS.name),
        read(t.INDEX.name),
        read(t.FILLS.name),
        read(t.ORDER_EVENTS.name),
        read(t.BALANCES.name),
        read(t.CONTROL.name),
        config,
        quality=read(t.MD_QUALITY.name),
        bounded=True,
    )
    got = Outputs([], [], [])
    op.output("states", out.states, TestingSink(got.states))
    op.output("alerts", out.alerts, TestingSink(got.alerts))
    op.output("intents", out.intents, TestingSink(got.intents))
    run_main(flow)
    return got


def test_the_accounts_global_and_scopes_release_on_the_stages_end_markers() -> None:
    events = two_markets()
    ends = [InputEnded(name, 0, 1) for name in TOPICS]
    whole = run([*events, *ends]).states
    aborted = run([*events, *ends, TestingSource.ABORT()]).states
    by_scope = {s.scope for s in whole}
    assert {
        "account:main",
        "global",
        "market:binance:BTC/USDT",
        "market:binance:SOL/USDT",
    } <= by_scope
    assert any(s.scope == "global" and s.status == "HALTED" for s in whole)
    assert any(s.scope == "account:main" and s.status == "HALTED" for s in whole)
    assert sorted(aborted, key=lambda s: (s.scope, s.ts)) == sorted(
        whole, key=lambda s: (s.scope, s.ts)
    )


def per_key(out: Outputs) -> dict[str, dict[str, list[Any]]]:
    """Each output per scope (intents per market), in order."""
    got: dict[str, dict[str, list[Any]]] = {"states": {}, "alerts": {}, "intents": {}}
    for s in out.states:
        got["states"].setdefault(s.scope, []).append(s)
    for a in out.alerts:
        got["alerts"].setdefault(a.scope, []).append(a)
    for i in out.intents:
        got["intents"].setdefault(i.key, []).append(i)
    return got


def test_the_accounts_global_and_scopes_do_not_depend_on_the_markets_arrival_order() -> None:
    """Every topic but the ticks ends first, so each market's stage releases its ticks as
    they come; SOL's whole history before BTC's, or BTC's before SOL's, gives what the
    events in event time give. On main, whose later stages took the markets' outputs in
    arrival order, the account's, global and the assets' states differed."""
    events = two_markets()
    ticks_end = InputEnded(t.TICKS.name, 0, 1)
    others_end = [InputEnded(name, 0, 1) for name in TOPICS if name != t.TICKS.name]
    fills = [e for e in events if isinstance(e, Fill)]
    sol = [e for e in events if isinstance(e, Tick) and e.symbol == "SOL/USDT"]
    btc = [e for e in events if isinstance(e, Tick) and e.symbol == "BTC/USDT"]
    in_time = per_key(run([*events, *others_end, ticks_end]))
    assert in_time["intents"]  # the halts cancel orders
    for first, then in ((sol, btc), (btc, sol)):
        assert per_key(run([*fills, *others_end, *first, *then, ticks_end])) == in_time


def test_a_scope_waits_only_for_the_stage_keys_that_can_speak_to_it() -> None:
    portfolio, scopes = later_inputs(CONFIG)
    btc, sol = "markets@binance:BTC/USDT", "markets@binance:SOL/USDT"
    assert portfolio == {
        "account:main": ("control", btc, sol, OTHER),
        "global": ("control", btc, sol, OTHER),
    }
    assert scopes["market:binance:BTC/USDT"] == ("control", btc, OTHER)
    assert scopes["asset:SOL"] == ("control", sol, "exposure@SOL", OTHER)
    assert scopes["asset:USDT"] == ("control", btc, "exposure@USDT", sol, OTHER)
    assert scopes["account:main"] == ("control", btc, sol, "portfolio@account:main", OTHER)
    assert scopes["global"] == ("control", btc, sol, "portfolio@global", OTHER)
