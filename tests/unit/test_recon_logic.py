"""Balance reconciliation logic: windows, legs, fees, transfers, duplicates, late events."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.recon_alerts import BREAK_ALERT, RESOLVED_ALERT, is_new_break
from makerflow.operators.recon_config import NS, ReconConfig, window_start
from makerflow.operators.recon_inputs import check_snapshot, fill_legs
from makerflow.operators.recon_logic import BalanceRecon, reconcile_all
from makerflow.schemas.events import Alert, BalanceSnapshot, DeadLetter, Fill
from tests.recon_sessions import (
    CFG,
    FILLS,
    OPENING,
    T0,
    W,
    deposit,
    exchange_session,
    fill,
    latest,
    random_session,
    reports,
    snap,
)


def test_windows_align_to_the_epoch() -> None:
    assert window_start(T0 + 59 * NS, W) == T0
    assert window_start(T0 + W, W) == T0 + W
    assert window_start(7 * NS, 5 * NS) == 5 * NS


def test_clean_session_every_window_ok_with_fills_matched() -> None:
    out = reconcile_all(exchange_session(FILLS, OPENING, 3), CFG)
    assert not [o for o in out if isinstance(o, DeadLetter | Alert)]
    rs = latest(out)
    # 1 baseline window before T0, then 3 windows, for BTC and USDT.
    assert len(rs) == 8
    assert all(r.status == "OK" and r.version == 1 for r in rs.values())
    assert rs[("BTC", T0)].fills_matched == 2
    assert rs[("USDT", T0 + W)].fills_matched == 1
    assert rs[("BTC", T0 + 2 * W)].fills_matched == 1
    btc0 = rs[("BTC", T0)]
    assert btc0.opening == pytest.approx(1.0)
    assert btc0.expected == pytest.approx(1.0 + 0.5 - 0.0005 - 0.2)
    assert btc0.window_end == T0 + W and btc0.ts == T0 + W - 1


def test_removed_fill_breaks_exactly_its_window_with_the_right_difference() -> None:
    session = [e for e in exchange_session(FILLS, OPENING, 3) if getattr(e, "trade_id", "") != "t3"]
    out = reconcile_all(session, CFG)
    rs = latest(out)
    broken = {k for k, r in rs.items() if r.status == "BREAK"}
    assert broken == {("BTC", T0 + W), ("USDT", T0 + W)}
    # The exchange booked the buy we did not see: more BTC, less USDT (price*qty and its fee).
    assert rs[("BTC", T0 + W)].difference == pytest.approx(0.1, abs=1e-12)
    assert rs[("USDT", T0 + W)].difference == pytest.approx(-(29_900.0 * 0.1 + 2.99), abs=1e-9)
    assert rs[("BTC", T0 + W)].fills_matched == 0
    alerts = [o for o in out if isinstance(o, Alert)]
    assert {a.name for a in alerts} == {BREAK_ALERT}
    assert {a.labels["asset"] for a in alerts} == {"BTC", "USDT"}
    assert all(is_new_break(a) for a in alerts)
    # The next window is anchored on the exchange's snapshot again: the break does not spread.
    assert rs[("BTC", T0 + 2 * W)].status == "OK"


def test_fee_in_base_and_fee_in_quote() -> None:
    cfg = CFG
    base_fee = fill_legs(fill("a", T0, "buy", 100.0, 2.0, 0.002, "BTC"), cfg)
    quote_fee = fill_legs(fill("b", T0, "sell", 100.0, 2.0, 0.2, "USDT"), cfg)
    assert not isinstance(base_fee, DeadLetter) and not isinstance(quote_fee, DeadLetter)
    assert {leg.asset: leg.amount for leg in base_fee} == pytest.approx(
        {"BTC": 2.0 - 0.002, "USDT": -200.0}
    )
    assert {leg.asset: leg.amount for leg in quote_fee} == pytest.approx(
        {"BTC": -2.0, "USDT": 200.0 - 0.2}
    )
    # A fee in a third asset is a third leg.
    bnb = fill_legs(fill("c", T0, "buy", 100.0, 1.0, 0.01, "BNB"), cfg)
    assert not isinstance(bnb, DeadLetter)
    assert {leg.asset: leg.amount for leg in bnb} == pytest.approx(
        {"BTC": 1.0, "USDT": -100.0, "BNB": -0.01}
    )
    # And the windows with either kind of fee reconcile OK; dropping a fee breaks.
    fills = [
        fill("f1", T0 + NS, "buy", 100.0, 2.0, 0.002, "BTC"),
        fill("f2", T0 + 2 * NS, "sell", 100.0, 1.0, 0.1, "USDT"),
    ]
    assert all(
        r.status == "OK"
        for r in latest(reconcile_all(exchange_session(fills, OPENING, 1), cfg)).values()
    )
    no_fee = [fills[0], fill("f2", T0 + 2 * NS, "sell", 100.0, 1.0)]
    session = [
        no_fee[1] if getattr(e, "trade_id", "") == "f2" else e
        for e in exchange_session(fills, OPENING, 1)
    ]
    rs = latest(reconcile_all(session, cfg))
    assert rs[("USDT", T0)].status == "BREAK"
    assert rs[("USDT", T0)].difference == pytest.approx(-0.1)
    assert rs[("BTC", T0)].status == "OK"


def test_deposit_and_withdrawal_are_booked() -> None:
    events = [
        deposit(T0 + 5 * NS, "USDT", 1_000.0, "dep1"),
        deposit(T0 + W + 5 * NS, "BTC", -0.3, "wd1"),
    ]
    session = exchange_session([*FILLS[:2], *events], OPENING, 2)
    out = reconcile_all(session, CFG)
    rs = latest(out)
    assert all(r.status == "OK" for r in rs.values())
    assert rs[("USDT", T0)].expected == pytest.approx(50_000 + 1_000 + 30_100 * 0.2 - 6.02 - 15_000)
    assert "1 transfer" in rs[("USDT", T0)].reason
    # Without the deposit event the window breaks by exactly the deposit.
    missing = [e for e in session if getattr(e, "transfer_id", "") != "dep1"]
    assert latest(reconcile_all(missing, CFG))[("USDT", T0)].difference == pytest.approx(1_000.0)


def test_duplicate_fill_is_counted_once() -> None:
    session = exchange_session(FILLS, OPENING, 3)
    dup = FILLS[0]
    i = session.index(dup)
    session.insert(i + 1, dup)
    session.insert(i + 3, dup)
    rs = latest(reconcile_all(session, CFG))
    assert all(r.status == "OK" and r.version == 1 for r in rs.values())
    assert rs[("BTC", T0)].fills_matched == 2
    assert "2 duplicate" in rs[("BTC", T0)].reason


def test_late_fill_amends_its_closed_window_visibly() -> None:
    late = FILLS[0]
    session = [e for e in exchange_session(FILLS, OPENING, 3) if e is not late]
    # The fill turns up after window T0 was reported (watermark far past its end + grace).
    pos = next(i for i, e in enumerate(session) if e.ts > T0 + 2 * W)
    session.insert(pos, late)
    out = reconcile_all(session, CFG)
    btc0 = [r for r in reports(out) if r.asset == "BTC" and r.window_start == T0]
    assert [(r.version, r.status) for r in btc0] == [(1, "BREAK"), (2, "OK")]
    assert btc0[0].difference == pytest.approx(0.5 - 0.0005)
    assert btc0[1].reason.startswith("amended (v2, after late fill fill:local:BTC/USDT:t1)")
    assert btc0[1].fills_matched == 2
    # Only the window the fill belongs to is amended.
    assert all(r.version == 1 for r in reports(out) if r.window_start != T0)
    resolved = [o for o in out if isinstance(o, Alert) and o.name == RESOLVED_ALERT]
    assert {(a.labels["asset"], a.labels["version"]) for a in resolved} == {
        ("BTC", "2"),
        ("USDT", "2"),
    }


def test_fill_past_allowed_lateness_is_a_dead_letter() -> None:
    cfg = ReconConfig(window_s=60, grace_s=5, allowed_lateness_s=60)
    late = FILLS[0]
    session = [e for e in exchange_session(FILLS, OPENING, 4) if e is not late]
    session.append(late)
    out = reconcile_all(session, cfg)
    dead = [o for o in out if isinstance(o, DeadLetter)]
    # One per leg: each balance (BTC and USDT) judges the fill on its own.
    assert sorted(d.reason.split()[0] for d in dead) == ["BTC", "USDT"]
    assert all("allowed lateness" in d.reason and b'"trade_id":"t1"' in d.raw for d in dead)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (
            BalanceSnapshot(ts=T0 + NS, venue="local", asset="BTC", free=-1.0, total=-1.0),
            "negative",
        ),
        (
            BalanceSnapshot(ts=T0 + NS, venue="local", asset="BTC", free=math.nan, total=1.0),
            "finite",
        ),
        (
            BalanceSnapshot(ts=T0 + NS, venue="local", asset="DOGE", free=1.0, total=1.0),
            "unknown asset",
        ),
        (
            BalanceSnapshot(ts=T0 + NS, venue="local", asset="BTC", free=1.0, used=1.0, total=1.0),
            "!= total",
        ),
    ],
)
def test_bad_snapshot_is_a_dead_letter_not_a_crash(bad: BalanceSnapshot, why: str) -> None:
    assert isinstance(check_snapshot(bad, CFG), DeadLetter)
    session = exchange_session(FILLS[:3], OPENING, 2)
    session.insert(3, bad)
    out = reconcile_all(session, CFG)
    dead = [o for o in out if isinstance(o, DeadLetter)]
    assert len(dead) == 1 and why in dead[0].reason and dead[0].step == "reconcile"
    assert dead[0].raw  # the whole snapshot is kept for a person to look at
    assert all(r.status == "OK" for r in latest(out).values())


def test_bad_fill_is_a_dead_letter() -> None:
    assert isinstance(fill_legs(fill("x", T0, "buy", math.inf, 1.0), CFG), DeadLetter)
    assert isinstance(fill_legs(fill("x", T0, "buy", 1.0, 0.0), CFG), DeadLetter)
    assert isinstance(fill_legs(fill("x", T0, "buy", 1.0, 1.0, 0.1), CFG), DeadLetter)
    odd = Fill(ts=T0, venue="local", symbol="XYZ/USDT", trade_id="x", side="buy", price=1, qty=1)
    dl = fill_legs(odd, CFG)
    assert isinstance(dl, DeadLetter) and "XYZ" in dl.reason


def test_tolerance_respects_the_asset_precision() -> None:
    cfg = ReconConfig(window_s=60, assets={"BTC": 1e-8, "USDT": 0.01})
    r = BalanceRecon("main", "USDT", cfg)
    # The exchange rounds each booked amount to a cent: 3 fills, two snapshots.
    assert r.tolerance(100.0, 100.0, 3) == pytest.approx(0.025)
    session = [
        snap(T0 - NS, "USDT", 1000.0),
        fill("p1", T0 + NS, "buy", 0.333333, 1.0),
        snap(T0 + 2 * NS, "USDT", 999.67),  # the exchange booked 0.33 (rounded)
    ]
    rs = latest(reconcile_all(session, cfg))
    assert rs[("USDT", T0)].status == "OK"
    session[-1] = snap(T0 + 2 * NS, "USDT", 999.64)  # three cents off: more than rounding
    rs = latest(reconcile_all(session, cfg))
    assert rs[("USDT", T0)].status == "BREAK"
    assert rs[("USDT", T0)].difference == pytest.approx(-0.026667, abs=1e-6)


def test_fill_after_the_closing_snapshot_is_reconciled_in_the_next_window() -> None:
    session = [
        snap(T0 - NS, "BTC", 1.0),
        snap(T0 + 30 * NS, "BTC", 1.0),
        fill("late_in_window", T0 + 40 * NS, "buy", 10.0, 0.5),
        snap(T0 + W + 30 * NS, "BTC", 1.5),
    ]
    rs = latest(
        reconcile_all(session, CFG.__class__(window_s=60, assets={"BTC": 1e-8, "USDT": 1e-8}))
    )
    assert rs[("BTC", T0)].status == "OK" and rs[("BTC", T0)].fills_matched == 0
    assert rs[("BTC", T0 + W)].status == "OK" and rs[("BTC", T0 + W)].fills_matched == 1


def test_window_without_snapshot_is_unconfirmed_and_carries_its_fills() -> None:
    session = [
        snap(T0 - NS, "BTC", 1.0),
        fill("a", T0 + NS, "buy", 10.0, 0.5),
        snap(T0 + W + NS, "BTC", 1.5),
    ]
    rs = latest(reconcile_all(session, CFG))
    assert rs[("BTC", T0)].status == "BREAK" and rs[("BTC", T0)].reported is None
    assert "no exchange balance snapshot" in rs[("BTC", T0)].reason
    assert rs[("BTC", T0 + W)].status == "OK" and rs[("BTC", T0 + W)].fills_matched == 1


def test_state_round_trips_and_stays_small() -> None:
    session = exchange_session(FILLS, OPENING, 12)
    whole = reconcile_all(session, CFG)
    a = BalanceRecon("main", "BTC", CFG)
    b = BalanceRecon("main", "BTC", CFG)
    legs_out = []
    for i, ev in enumerate(e for e in session if getattr(e, "asset", "BTC") == "BTC"):
        if i % 3 == 0:  # resume from a snapshot every few events, as after a restart
            b = BalanceRecon.from_state(b.state(), CFG)
        if isinstance(ev, Fill):
            legs = fill_legs(ev, CFG)
            assert not isinstance(legs, DeadLetter)
            for leg in legs:
                if leg.asset == "BTC":
                    legs_out += b.on_leg(leg)
                    a.on_leg(leg)
        else:
            legs_out += b.on_snapshot(ev)
            a.on_snapshot(ev)
    legs_out += b.flush()
    expect = [r for r in reports(whole) if r.asset == "BTC"]
    assert reports(legs_out) == expect
    # With 60 s windows, 5 s grace and 300 s lateness only the last few windows are held.
    assert b.open_windows <= 7


def test_long_multi_account_session_is_clean_and_every_window_reported_once() -> None:
    session = random_session(windows=20, fills_per_window=15)
    out = reconcile_all(session, CFG)
    rs = reports(out)
    assert not [o for o in out if isinstance(o, DeadLetter | Alert)]
    assert all(r.status == "OK" and r.version == 1 for r in rs)
    # 3 accounts x 4 assets x (baseline + 20 windows)
    assert len({(r.account, r.asset, r.window_start) for r in rs}) == len(rs) == 3 * 4 * 21
    assert sum(r.fills_matched for r in rs if r.asset in ("BTC", "ETH")) == 20 * 15


def test_dead_letters_name_the_topic_the_event_came_from() -> None:
    bad = BalanceSnapshot(ts=T0, venue="local", asset="BTC", free=-1.0, total=-1.0)
    dl = check_snapshot(bad, CFG)
    assert isinstance(dl, DeadLetter) and dl.topic == "balances"
    dl2 = fill_legs(fill("x", T0, "buy", math.nan, 1.0), CFG)
    assert isinstance(dl2, DeadLetter) and dl2.topic == "fills"


def _final(out) -> dict:
    best: dict = {}
    for r in reports(out):
        k = (r.account, r.asset, r.window_start)
        if k not in best or r.version > best[k].version:
            best[k] = r
    return {
        k: (r.opening, r.expected, r.reported, r.status, r.fills_matched) for k, r in best.items()
    }


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.randoms(use_true_random=False))
def test_arrival_order_never_changes_the_final_reports(seed: int, order) -> None:
    """Whatever order the three topics deliver in, the newest version of every window says
    what the in-order run says (nothing expires here; amendments do the rest)."""
    cfg = ReconConfig(window_s=60, grace_s=0, allowed_lateness_s=10**6)
    events = random_session(windows=4, fills_per_window=5, seed=seed)
    shuffled = list(events)
    order.shuffle(shuffled)
    assert _final(reconcile_all(shuffled, cfg)) == _final(reconcile_all(events, cfg))


def test_same_trade_id_with_other_content_is_a_dead_letter_not_a_duplicate() -> None:
    session = exchange_session(FILLS, OPENING, 3)
    forged = fill("t1", T0 + 10 * NS, "buy", 30_000.0, 5.0, 0.0005, "BTC")  # qty 5, not 0.5
    session.insert(session.index(FILLS[0]) + 1, forged)
    out = reconcile_all(session, CFG)
    dead = [o for o in out if isinstance(o, DeadLetter)]
    assert len(dead) == 2 and all("conflicts with the one booked" in d.reason for d in dead)
    assert all(r.status == "OK" for r in latest(out).values())
