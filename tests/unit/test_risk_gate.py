"""The risk gate: places refused in halted, paused, unheard or stale scopes; cancels pass;
the same states in any order, duplicated, give the same verdicts."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from makerflow.operators.risk_gate import (
    GateConfig,
    RiskGate,
    _GateLogic,
    rejected,
    state_targets,
)
from makerflow.schemas.events import OrderIntent, RiskState
from makerflow.schemas.markers import CaughtUp
from makerflow.schemas.scopes import scopes_of_market

S = 1_000_000_000
T0 = 1_723_161_254_000_000_000
MARKET = "market:binance:BTC/USDT"
SCOPES = scopes_of_market("binance", "BTC/USDT")


def place(ts: int = T0, **kw) -> OrderIntent:
    base = dict(
        ts=ts,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id="mf-1",
        side="buy",
        price=60_000.0,
        qty=0.001,
    )
    return OrderIntent(**{**base, **kw})


def state(scope: str, status: str = "ACTIVE", ts: int = T0, **kw) -> RiskState:
    return RiskState(ts=ts, scope=scope, status=status, **kw)  # type: ignore[arg-type]


def all_active(ts: int = T0) -> list[RiskState]:
    return [state(s, ts=ts) for s in SCOPES]


def test_fails_closed_until_every_covering_scope_is_heard():
    gate = RiskGate(GateConfig())
    r = gate.check(place())
    assert r is not None and r.why == "unknown" and "fail closed" in r.message
    for s in all_active()[:-1]:
        gate.on_state(s)
    r = gate.check(place())
    assert r is not None and r.scope == MARKET
    gate.on_state(state(MARKET))
    assert gate.check(place()) is None


def test_a_halt_of_any_covering_scope_refuses_places_but_never_cancels():
    for scope in SCOPES:
        gate = RiskGate(GateConfig(), all_active())
        gate.on_state(state(scope, "HALTED", T0 + 1, reasons=("largest move 900 bps",)))
        r = gate.check(place(T0 + 2))
        assert r is not None and r.why == "halted" and r.scope == scope
        assert "largest move 900 bps" in r.message
        assert gate.check(place(T0 + 2, action="cancel")) is None
        assert (
            gate.check(OrderIntent(ts=T0, venue="binance", symbol="BTC/USDT", action="cancel_all"))
            is None
        )
    # Another market's halt does not touch this one.
    gate = RiskGate(GateConfig(), all_active())
    gate.on_state(state("market:binance:ETH/USDT", "HALTED"))
    assert gate.check(place()) is None


def test_paused_refuses_reduce_only_passes_where_configured():
    gate = RiskGate(GateConfig(), [*all_active(), state(MARKET, "PAUSED", T0 + 1)])
    assert gate.check(place(T0 + 2)).why == "paused"
    assert gate.check(place(T0 + 2, reduce_only=True)) is None
    strict = RiskGate(GateConfig(reduce_only_passes=False), gate.snapshot())
    assert strict.check(place(T0 + 2, reduce_only=True)).why == "paused"


def test_a_state_older_than_the_bound_in_event_time_is_not_trusted():
    gate = RiskGate(GateConfig(max_state_age_ms=3_000), all_active())
    assert gate.check(place(T0 + 3 * S)) is None
    r = gate.check(place(T0 + 3 * S + 1))
    assert r is not None and r.why == "stale"
    # A halt is reported before staleness.
    gate.on_state(state("global", "HALTED", T0))
    assert gate.check(place(T0 + 4 * S)).why == "halted"


def test_resume_supersedes_the_halt_in_event_time_and_a_late_old_halt_is_ignored():
    gate = RiskGate(GateConfig(), all_active())
    gate.on_state(state(MARKET, "HALTED", T0 + 1))
    gate.on_state(state(MARKET, "ACTIVE", T0 + 2))
    gate.on_state(state(MARKET, "HALTED", T0 + 1))  # a duplicate delivered late
    assert gate.check(place(T0 + 3)) is None


def test_rejected_event_and_state_routing():
    gate = RiskGate(GateConfig(), [*all_active(), state("asset:BTC", "HALTED", reasons=("x",))])
    ev = rejected(place(), gate.check(place()))
    assert ev.status == "rejected" and ev.client_order_id == "mf-1"
    assert ev.reason.startswith("risk_gate:halted: asset:BTC is HALTED: x")
    markets = ("binance:BTC/USDT", "binance:ETH/USDT", "okx:ETH/USDC")
    assert state_targets(state("asset:BTC"), markets) == ["binance:BTC/USDT"]
    assert state_targets(state("asset:USDT"), markets) == ["binance:BTC/USDT", "binance:ETH/USDT"]
    assert state_targets(state("global"), markets) == list(markets)
    assert state_targets(state("account:main"), markets) == list(markets)
    assert state_targets(state("market:kraken:XBT/EUR"), markets) == ["kraken:XBT/EUR"]


_states = st.builds(
    state,
    st.sampled_from(SCOPES),
    st.sampled_from(["ACTIVE", "PAUSED", "HALTED"]),
    st.integers(T0, T0 + 10 * S),
)


@given(
    st.lists(_states, min_size=1, max_size=30), st.randoms(use_true_random=False), st.integers(0, 3)
)
def test_any_order_and_any_duplication_of_states_gives_the_same_gate(states, rnd, dups):
    """At-least-once delivery: duplicated, reordered, delayed states end in the same gate."""
    ref = RiskGate(GateConfig(), states)
    shuffled = [*states, *states[:dups]]
    rnd.shuffle(shuffled)
    other = RiskGate(GateConfig(), shuffled)
    assert other.states == ref.states
    for ts in (T0, T0 + 5 * S, T0 + 12 * S):
        assert other.check(place(ts)) == ref.check(place(ts))


def test_an_intents_marker_keeps_its_place_behind_held_places_and_is_never_snapshotted():
    # The execution start takes the marker as "every intent before it is in": it must not
    # overtake a place waiting for risk's first word, nor outlive its run in a snapshot.
    mark = CaughtUp("binance:BTC/USDT", "orders.intents", 0, 1)
    logic = _GateLogic(GateConfig(hold_ms=2_000), lambda: datetime.fromtimestamp(0, UTC), None)
    out, _ = logic.on_batch([place(), mark])
    assert list(out) == []
    _, held = logic.snapshot()
    assert held == (place(),)
    out, _ = logic.on_batch(all_active())
    assert list(out) == [place(), mark]
    out, _ = logic.on_batch([mark, place(client_order_id="mf-2")])
    assert list(out) == [mark, place(client_order_id="mf-2")]
