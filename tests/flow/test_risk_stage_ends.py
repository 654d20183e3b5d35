"""A bounded risk flow's later stages release on the earlier stages' end markers.

The accounts, ``global`` and the scopes' kill switches merge what several markets' stages
say in event time (``risk_op(..., bounded=True)``); each stage key says it has ended once
its inputs have, so the next stage goes on before the end of the whole input. Here the
input ends with every topic's end marker and then aborts (no end of input): every state
of the full run is already out.
"""

from __future__ import annotations

from typing import Any

from bytewax.testing import TestingSource

from makerflow.operators.risk_limits import PortfolioLimits
from makerflow.operators.risk_stages import OTHER, later_inputs
from makerflow.schemas import topics as t
from makerflow.schemas.events import Fill, Tick
from tests.risk_two_markets import Outputs, end_markers, run, two_market_config
from tests.risk_two_markets import two_markets as make_two_markets

CONFIG = two_market_config(
    account=PortfolioLimits(max_drawdown=60.0), global_limits=PortfolioLimits(max_loss=100.0)
)


def two_markets() -> list[Any]:
    return make_two_markets(
        600,
        btc_jump_at=300,
        sol_jump_at=400,
        sol_shift_ns=1,
        btc_buys=(0.01, 100),
        sol_buys=(0.15, 100),
    ).in_time()


def test_the_accounts_global_and_scopes_release_on_the_stages_end_markers() -> None:
    events = two_markets()
    ends = end_markers()
    whole = run([*events, *ends], CONFIG).states
    aborted = run([*events, *ends, TestingSource.ABORT()], CONFIG).states
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
    [ticks_end] = [m for m in end_markers() if m.topic == t.TICKS.name]
    others_end = end_markers(but=(t.TICKS.name,))
    fills = [e for e in events if isinstance(e, Fill)]
    sol = [e for e in events if isinstance(e, Tick) and e.symbol == "SOL/USDT"]
    btc = [e for e in events if isinstance(e, Tick) and e.symbol == "BTC/USDT"]
    in_time = per_key(run([*events, *others_end, ticks_end], CONFIG))
    assert in_time["intents"]  # the halts cancel orders
    for first, then in ((sol, btc), (btc, sol)):
        assert per_key(run([*fills, *others_end, *first, *then, ticks_end], CONFIG)) == in_time


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
