"""The reconcile operator in real Bytewax runs: run_main, and cluster_main with 1 and 2 workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import REGISTRY

from makerflow.operators.recon_alerts import BREAK_ALERT, RESOLVED_ALERT
from makerflow.operators.recon_config import ReconConfig
from makerflow.operators.recon_logic import reconcile_all
from makerflow.operators.recon_orders import ExchangeOpenOrders, ExchangeOrder
from makerflow.operators.reconcile import reconcile_op, reconcile_orders_op
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    DeadLetter,
    Fill,
    OrderEvent,
    ReconReport,
    Transfer,
)
from tests.recon_sessions import (
    CFG,
    FILLS,
    OPENING,
    T0,
    W,
    exchange_session,
    ordered,
    random_session,
    reports,
)


@dataclass
class Outputs:
    reports: list[ReconReport] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def run_recon(
    session: Sequence[object], runner: Callable[[Dataflow], None], cfg: ReconConfig = CFG
) -> Outputs:
    """One recorded session (one input, as a replay) split into the three topics' streams."""
    got = Outputs()
    flow = Dataflow("recon_test")
    src = op.input("in", flow, TestingSource(list(session)))
    fills = op.filter_map("fills", src, lambda e: e if isinstance(e, Fill) else None)
    snaps = op.filter_map("snaps", src, lambda e: e if isinstance(e, BalanceSnapshot) else None)
    moves = op.filter_map("moves", src, lambda e: e if isinstance(e, Transfer) else None)
    out = reconcile_op("recon", fills, snaps, moves, cfg)
    op.output("reports", out.reports, TestingSink(got.reports))
    op.output("alerts", out.alerts, TestingSink(got.alerts))
    op.output("dead", out.dead_letters, TestingSink(got.dead))
    runner(flow)
    return got


def breaks_metric(asset: str) -> float:
    v = REGISTRY.get_sample_value(
        "makerflow_reconciliation_breaks_total", {"account": "main", "asset": asset}
    )
    return v or 0.0


def test_clean_session_every_window_ok(run_flow: Callable[[Dataflow], None]) -> None:
    got = run_recon(exchange_session(FILLS, OPENING, 3), run_flow)
    assert len(got.reports) == 8
    assert all(r.status == "OK" and r.version == 1 for r in got.reports)
    assert got.alerts == [] and got.dead == []


def test_removed_fill_breaks_its_window_alerts_and_counts(
    run_flow: Callable[[Dataflow], None],
) -> None:
    before = breaks_metric("BTC")
    session = [e for e in exchange_session(FILLS, OPENING, 3) if getattr(e, "trade_id", "") != "t3"]
    got = run_recon(session, run_flow)
    broken = [r for r in got.reports if r.status == "BREAK"]
    assert {(r.asset, r.window_start) for r in broken} == {("BTC", T0 + W), ("USDT", T0 + W)}
    btc = next(r for r in broken if r.asset == "BTC")
    assert btc.difference == pytest.approx(0.1, abs=1e-12)
    assert sorted(a.labels["asset"] for a in got.alerts if a.name == BREAK_ALERT) == [
        "BTC",
        "USDT",
    ]
    assert breaks_metric("BTC") == before + 1


def test_late_fill_amends_the_window(run_flow: Callable[[Dataflow], None]) -> None:
    late = FILLS[0]
    session = [e for e in exchange_session(FILLS, OPENING, 3) if e is not late]
    session.insert(next(i for i, e in enumerate(session) if e.ts > T0 + 2 * W), late)
    got = run_recon(session, run_flow)
    btc0 = [r for r in ordered(got.reports) if r.asset == "BTC" and r.window_start == T0]
    assert [(r.version, r.status) for r in btc0] == [(1, "BREAK"), (2, "OK")]
    assert btc0[1].reason.startswith("amended")
    assert {a.labels["asset"] for a in got.alerts if a.name == RESOLVED_ALERT} == {"BTC", "USDT"}


@pytest.mark.parametrize(
    "bad",
    [
        BalanceSnapshot(ts=T0 + 1, venue="local", asset="BTC", free=-2.0, total=-2.0),
        BalanceSnapshot(ts=T0 + 1, venue="local", asset="BTC", free=float("nan"), total=1.0),
        BalanceSnapshot(ts=T0 + 1, venue="local", asset="WAT", free=1.0, total=1.0),
    ],
    ids=["negative", "nan", "unknown_asset"],
)
def test_bad_snapshot_goes_to_dead_letters_and_the_flow_goes_on(bad: BalanceSnapshot) -> None:
    session = exchange_session(FILLS[:3], OPENING, 2)
    session.insert(4, bad)
    got = run_recon(session, lambda f: cluster_main(f, [], 0, worker_count_per_proc=2))
    assert len(got.dead) == 1 and got.dead[0].step == "recon_test.recon"  # the operator's step id
    assert len(got.reports) == 6 and all(r.status == "OK" for r in got.reports)


def test_one_and_two_workers_give_the_same_reports(run_flow: Callable[[Dataflow], None]) -> None:
    session = random_session(windows=12, fills_per_window=12)
    # Two fills lost and one arriving late, so BREAKs and amendments are compared too.
    lost = {"x20", "x77"}
    late = next(e for e in session if getattr(e, "trade_id", "") == "x30")
    session = [e for e in session if getattr(e, "trade_id", "") not in lost and e is not late]
    session.insert(next(i for i, e in enumerate(session) if e.ts > late.ts + 4 * W), late)
    expected = ordered(reports(reconcile_all(session, CFG)))
    assert any(r.status == "BREAK" for r in expected)
    assert any(r.version == 2 for r in expected)
    got = run_recon(session, run_flow)
    assert ordered(got.reports) == expected


def test_open_orders_orphan_and_missing_raise_alerts(run_flow: Callable[[Dataflow], None]) -> None:
    s = 1_000_000_000

    def ev(cid: str, status: str, ts: int, xid: str) -> OrderEvent:
        return OrderEvent(
            ts=ts,
            venue="local",
            symbol="BTC/USDT",
            client_order_id=cid,
            exchange_order_id=xid,
            status=status,  # type: ignore[arg-type]
            side="buy",
            price=100.0,
            qty=1.0,
        )

    listing = ExchangeOpenOrders(
        "local",
        "main",
        T0 + 60 * s,
        (
            ExchangeOrder("BTC/USDT", "buy", "1", "mf-a", 100.0, 1.0, 0.0, T0),
            ExchangeOrder("BTC/USDT", "sell", "3", "by-hand", 120.0, 2.0, 0.0, T0 + s),
        ),
    )
    items = [
        ev("mf-a", "ack", T0, "1"),
        ev("mf-b", "ack", T0, "2"),
        ev("mf-c", "ack", T0, "4"),
        ev("mf-c", "canceled", T0 + s, "4"),
        listing,
    ]
    found: list[Alert] = []
    flow = Dataflow("orders_test")
    src = op.input("in", flow, TestingSource(items))
    orders = op.filter_map("orders", src, lambda e: e if isinstance(e, OrderEvent) else None)
    lists = op.filter_map("lists", src, lambda e: e if isinstance(e, ExchangeOpenOrders) else None)
    out = reconcile_orders_op("recon_orders", orders, lists, CFG)
    op.output("alerts", out.alerts, TestingSink(found))
    run_flow(flow)
    by_name = {a.name: a for a in found}
    assert set(by_name) == {"OpenOrderOrphan", "OpenOrderMissing"}
    assert "by-hand" in by_name["OpenOrderOrphan"].message
    assert "cid=mf-b" in by_name["OpenOrderMissing"].message


def test_quiet_key_closes_its_windows_after_idle_wall_time() -> None:
    """With idle_close_s, a balance whose feed goes quiet is still reported (unconfirmed)
    instead of waiting forever for event time to move."""
    from datetime import datetime, timedelta

    from makerflow.operators.recon_inputs import fill_legs
    from makerflow.operators.reconcile import ReconWindowLogic

    clock = [datetime(2024, 1, 1, tzinfo=UTC)]
    cfg = ReconConfig(window_s=60, grace_s=5, idle_close_s=30)
    logic = ReconWindowLogic(cfg, None, lambda: clock[0])
    logic.on_item(BalanceSnapshot(ts=T0 - 1, venue="local", asset="BTC", free=1.0, total=1.0))
    legs = fill_legs(FILLS[0], cfg)
    assert not isinstance(legs, DeadLetter)
    opened = clock[0]
    clock[0] += timedelta(seconds=20)
    # Fills still flowing do not count as news from a balance feed that went quiet.
    logic.on_item(next(leg for leg in legs if leg.asset == "BTC"))
    assert logic.notify_at() == opened + timedelta(seconds=30)
    clock[0] += timedelta(seconds=70)
    out, _ = logic.on_notify()
    reps = [r for r in out if isinstance(r, ReconReport) and r.window_start == T0]
    assert [(r.window_start, r.status, r.reported) for r in reps] == [(T0, "BREAK", None)]
    assert "no exchange balance snapshot" in reps[0].reason
    assert logic.notify_at() is None  # nothing pending: no more wake-ups
    # Without idle_close_s the operator never reads the clock.
    assert ReconWindowLogic(CFG, None, lambda: 1 / 0).notify_at() is None  # type: ignore[arg-type,return-value]


def test_fills_read_far_ahead_of_balances_do_not_close_windows(
    run_flow: Callable[[Dataflow], None],
) -> None:
    """Topics are read side by side in batches: here every fill arrives before any balance.
    Only the exchange's snapshots move a balance's event time, so no window is reported
    before its closing snapshot and nothing is amended or alerted."""
    session = random_session(windows=8, fills_per_window=10)
    fills_first = [e for e in session if isinstance(e, Fill)] + [
        e for e in session if not isinstance(e, Fill)
    ]
    got = run_recon(fills_first, run_flow)
    assert got.alerts == [] and got.dead == []
    assert all(r.status == "OK" and r.version == 1 for r in got.reports)
    assert ordered(got.reports) == ordered(reports(reconcile_all(session, CFG)))


def test_recovery_resumes_open_windows_from_snapshots(tmp_path) -> None:
    """Abort mid-session, resume from Bytewax's recovery store: the windows that were open
    carry on, and the reports are those of an uninterrupted run (each at least once)."""
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig, init_db_dir

    session = random_session(windows=6, fills_per_window=6)
    clean = run_recon(session, run_main)
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    cut = len(session) // 2
    aborted = [*session[:cut], TestingSource.ABORT(), *session[cut:]]

    def runner(flow: Dataflow) -> None:
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)

    first = run_recon(aborted, runner)
    assert len(first.reports) < len(clean.reports)
    second = run_recon(aborted, runner)
    resumed = {encode(r) for r in first.reports + second.reports}
    assert resumed == {encode(r) for r in clean.reports}


def test_idle_close_without_any_snapshot_reports_unconfirmed() -> None:
    from datetime import datetime, timedelta

    from makerflow.operators.recon_inputs import fill_legs
    from makerflow.operators.reconcile import ReconWindowLogic

    clock = [datetime(2024, 1, 1, tzinfo=UTC)]
    cfg = ReconConfig(window_s=60, grace_s=5, idle_close_s=30)
    logic = ReconWindowLogic(cfg, None, lambda: clock[0])
    legs = fill_legs(FILLS[0], cfg)
    assert not isinstance(legs, DeadLetter)
    logic.on_item(next(leg for leg in legs if leg.asset == "USDT"))
    clock[0] += timedelta(seconds=120)
    out, _ = logic.on_notify()
    reps = [r for r in out if isinstance(r, ReconReport)]
    assert [(r.asset, r.window_start, r.status) for r in reps] == [("USDT", T0, "BREAK")]
    assert "opening is unknown" in reps[0].reason
