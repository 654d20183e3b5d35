"""Intents from before a run: which the execution step may still send (pure triage)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.order_state import OrderState
from makerflow.operators.replayed_intents import triage
from makerflow.schemas.events import OrderEvent, OrderIntent

START = 1_000_000_000_000
MS = 1_000_000


def place(cid: str, ts: int) -> OrderIntent:
    return OrderIntent(
        ts=ts, venue="binance", symbol="BTC/USDT", action="place", client_order_id=cid,
        side="buy", price=100.0, qty=1.0,
    )  # fmt: skip


def cancel(cid: str, ts: int) -> OrderIntent:
    return OrderIntent(
        ts=ts, venue="binance", symbol="BTC/USDT", action="cancel", client_order_id=cid
    )  # fmt: skip


def run(intents, *, restored=False, listed_open=(), traded=(), now=START + 10_000 * MS, state=None):
    state = state or OrderState()
    for i in intents:
        state.on_intent(i)
    return state, triage(
        intents,
        state,
        started_ns=START,
        now_ns=now,
        ttl_ms=5_000,
        restored=restored,
        listed_open=frozenset(listed_open),
        listed_traded=frozenset(traded),
    )


def test_a_stale_place_is_answered_expired_and_its_cancel_is_moot():
    old = START - 60_000 * MS
    state, t = run([place("mf-1", old), cancel("mf-1", old + MS)])
    assert t.send == ()
    [ev] = t.expired
    assert ev.status == "rejected" and ev.reason.startswith("expired_intent")
    assert state.get("mf-1").state == "rejected"
    assert [i.action for i in t.moot] == ["cancel"]


def test_a_place_the_venue_lists_is_never_sent_and_its_cancel_is():
    old = START - 60_000 * MS
    _, t = run([place("mf-1", old), cancel("mf-1", old + MS)], listed_open={"mf-1"})
    assert [i.action for i in t.send] == ["cancel"]
    assert [i.action for i in t.moot] == ["place"]


def test_places_the_venue_may_have_closed_go_to_the_look_up():
    old = START - 60_000 * MS
    # the replayed epoch of a recovery, a place whose trades the venue lists, a young one
    _, t = run([place("mf-1", old)], restored=True)
    assert [i.client_order_id for i in t.send] == ["mf-1"]
    _, t = run([place("mf-2", old)], traded={"mf-2"})
    assert [i.client_order_id for i in t.send] == ["mf-2"]
    _, t = run([place("mf-3", START - 1_000 * MS)], now=START + 1_000 * MS)
    assert [i.client_order_id for i in t.send] == ["mf-3"] and t.expired == ()


def test_intents_of_this_run_pass_unchanged():
    intents = [place("mf-1", START), cancel("mf-1", START + 1), cancel("mf-9", START + 2)]
    _, t = run(intents)
    assert t.send == tuple(intents)


def test_an_old_cancel_of_an_order_still_open_is_sent():
    state = OrderState()
    state.on_intent(place("mf-1", START - 90_000 * MS))
    state.on_order_event(
        OrderEvent(
            ts=START - 90_000 * MS,
            venue="binance",
            symbol="BTC/USDT",
            client_order_id="mf-1",
            status="ack",
            side="buy",
            price=100.0,
            qty=1.0,
        )
    )
    _, t = run([cancel("mf-1", START - 60_000 * MS)], state=state)
    assert [i.action for i in t.send] == ["cancel"]


CIDS = st.sampled_from([f"mf-{i}" for i in range(4)])
INTENT = st.builds(
    lambda cid, action, age_ms: (place if action == "place" else cancel)(cid, START - age_ms * MS),
    CIDS,
    st.sampled_from(["place", "cancel"]),
    st.integers(-2_000, 20_000),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(INTENT, max_size=12),
    st.frozensets(CIDS),
    st.frozensets(CIDS),
    st.booleans(),
)
def test_no_stale_or_listed_place_is_ever_sent(intents, listed, traded, restored):
    now = START + 10_000 * MS
    _, t = run(intents, restored=restored, listed_open=listed, traded=traded, now=now)
    # every intent is accounted for once
    assert len(t.send) + len(t.expired) + len(t.moot) == len(intents)
    for i in t.send:
        if i.action != "place" or i.ts >= START:
            continue
        cid = i.client_order_id
        assert cid not in listed
        assert restored or cid in traded or (now - i.ts) / MS <= 5_000
    # a cancel of an order the venue lists open is always sent
    for i in intents:
        if i.action == "cancel" and i.client_order_id in listed:
            assert i in t.send
