"""Reconciliation against the local exchange, through the unmodified ccxt client.

A market-making session is traded with ccxt (REST) on the local exchange replaying recorded
BTCUSDT; our fills, order updates and balances are collected by the project's private stream
(ccxt.pro websockets), exactly as the execution service does. Reconciling them must give OK in
every window; a fill lost on the way must BREAK its own window; open-order reconciliation
against ``fetch_open_orders`` must find what was placed or canceled behind our back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import ccxt.async_support as ccxt
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from makerflow.exchange import LocalExchange
from makerflow.operators.recon_config import NS, ReconConfig, window_start
from makerflow.operators.recon_orders import (
    ExchangeOpenOrders,
    OpenOrderView,
    reconcile_open_orders,
)
from makerflow.operators.reconcile import reconcile_op, reconcile_orders_op
from makerflow.schemas.events import Alert, BalanceSnapshot, Fill, OrderEvent
from makerflow.sources.open_orders import OpenOrdersSource
from makerflow.sources.private_stream import PrivateStreamConfig, PrivateStreamReader
from tests.conftest import FIXTURES
from tests.recon_sessions import ordered

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
SYMBOL = "BTC/USDT"
CFG = ReconConfig(window_s=5, grace_s=1, allowed_lateness_s=30)


@dataclass
class Session:
    fills: list[Fill] = field(default_factory=list)
    balances: list[BalanceSnapshot] = field(default_factory=list)
    orders: list[OrderEvent] = field(default_factory=list)
    rounds: int = 0


async def _collect(reader: PrivateStreamReader, out: Session) -> None:
    async for ev in reader.events():
        if isinstance(ev, Fill):
            out.fills.append(ev)
        elif isinstance(ev, BalanceSnapshot):
            out.balances.append(ev)
        else:
            out.orders.append(ev)


async def _trade(ex: LocalExchange, c: Any, rounds: int) -> int:
    """Quote both sides at the touch (post-only, re-quoted each round) and cross the spread
    now and then, while the replayed market moves on. Returns the rounds traded."""
    await c.load_markets()
    resting: list[str] = []
    done = 0
    for r in range(rounds):
        if ex.advance(120) == 0:
            break
        done += 1
        for cid in resting:
            with contextlib.suppress(ccxt.OrderNotFound):
                await c.cancel_order(None, SYMBOL, {"clientOrderId": cid})
        resting = []
        book = await c.fetch_order_book(SYMBOL, 5)
        bid, ask = book["bids"][0][0], book["asks"][0][0]
        for side, price in (("buy", bid), ("sell", ask)):
            cid = f"mf-q{r}-{side}"
            with contextlib.suppress(ccxt.OrderImmediatelyFillable, ccxt.InvalidOrder):
                await c.create_order(
                    SYMBOL, "limit", side, 0.003, price, {"clientOrderId": cid, "postOnly": True}
                )
                resting.append(cid)
        if r % 4 == 0:
            side = "buy" if r % 8 == 0 else "sell"
            await c.create_order(SYMBOL, "market", side, 0.002, None, {"clientOrderId": f"mf-t{r}"})
        # Let the private stream catch up before the market moves again, as time passes live.
        await asyncio.sleep(0.02)
    return done


async def _stream_is_live(rest: Any, out: Session, tries: int = 20) -> None:
    """Trade only once the private stream's websocket delivers: a fill made before it has
    subscribed would never reach it (a busy machine makes that take a while). A probe order,
    placed and canceled, is repeated until its cancel comes through the stream."""
    await rest.load_markets()
    for n in range(tries):
        cid = f"mf-probe-{n}"
        await rest.create_order(SYMBOL, "limit", "buy", 0.001, 50_000, {"clientOrderId": cid})
        await rest.cancel_order(None, SYMBOL, {"clientOrderId": cid})
        for _ in range(20):
            if any(o.client_order_id == cid and o.status == "canceled" for o in out.orders):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the private stream never delivered a probe order's cancel")


async def _caught_up(rest: Any, out: Session, timeout: float = 20.0) -> None:
    """Wait until the private stream has delivered every trade the exchange lists for us,
    its newest balances equal the exchange's, and the orders its order events leave open are
    the ones the exchange lists (a busy machine delays the websocket, and its trade, balance
    and order channels arrive independently: a fill can come before its order's close)."""
    trades = {str(t["id"]) for t in await rest.fetch_my_trades(SYMBOL, limit=1000)}
    totals = (await rest.fetch_balance())["total"]
    listed = {str(o["clientOrderId"]) for o in await rest.fetch_open_orders(SYMBOL)}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        newest = {b.asset: b.total for b in sorted(out.balances, key=lambda b: b.ts)}
        got = {f.trade_id for f in out.fills}
        view = OpenOrderView()
        for ev in list(out.orders):
            view.apply(ev)
        believed = {o.client_order_id for o in view.open_orders()}
        if (
            trades <= got
            and all(newest.get(a) == pytest.approx(v) for a, v in totals.items() if v)
            and believed == listed
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"the private stream lags: {len(trades - got)} trades not delivered,"
        f" open orders {sorted(believed ^ listed)} disagree with the exchange"
    )


def trade_session(ex: LocalExchange, rounds: int) -> Session:
    """Trade ``rounds`` rounds; collect what the private stream reports meanwhile."""
    out = Session()
    cfg = PrivateStreamConfig(venue="local", account="main", symbols=(SYMBOL,), mode="websocket")
    reader = PrivateStreamReader(cfg, lambda pro: ex.client(pro=pro))

    async def go() -> None:
        collector = asyncio.ensure_future(_collect(reader, out))
        rest = ex.client()
        try:
            await _stream_is_live(rest, out)
            out.rounds = await _trade(ex, rest, rounds)
            await _caught_up(rest, out)
        finally:
            await rest.close()
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    asyncio.run(go())
    assert reader.mode_used == "websocket"
    return out


@pytest.fixture(scope="module")
def session() -> Session:
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        return trade_session(ex, rounds=60)


def replay(s: Session, drop: Callable[[Fill], bool] = lambda f: False) -> list[Any]:
    """The recorded topics replayed in event time (fills before a snapshot stamped the same
    millisecond: the snapshot already includes them)."""
    evs: list[Any] = [f for f in s.fills if not drop(f)] + list(s.balances)
    return sorted(evs, key=lambda e: (e.ts, 0 if isinstance(e, Fill) else 1))


def run_recon(events: list[Any], runner: Callable[[Dataflow], None]) -> tuple[list, list, list]:
    reports: list = []
    alerts: list = []
    dead: list = []
    flow = Dataflow("recon_exchange")
    src = op.input("in", flow, TestingSource(events))
    fills = op.filter_map("fills", src, lambda e: e if isinstance(e, Fill) else None)
    snaps = op.filter_map("snaps", src, lambda e: e if isinstance(e, BalanceSnapshot) else None)
    none = op.filter_map("none", src, lambda e: None)
    out = reconcile_op("recon", fills, snaps, none, CFG)
    op.output("reports", out.reports, TestingSink(reports))
    op.output("alerts", out.alerts, TestingSink(alerts))
    op.output("dead", out.dead_letters, TestingSink(dead))
    runner(flow)
    return reports, alerts, dead


def test_clean_session_every_window_ok(session: Session) -> None:
    assert session.rounds >= 40
    makers = [f for f in session.fills if f.liquidity == "maker"]
    takers = [f for f in session.fills if f.liquidity == "taker"]
    assert len(makers) >= 5 and len(takers) >= 5, "the session must trade both ways"
    assert {f.fee_asset for f in session.fills} == {"BTC", "USDT"}  # fees in base and quote

    reports, alerts, dead = run_recon(replay(session), run_main)
    assert dead == [] and alerts == []
    assert all(r.status == "OK" for r in reports), [r.reason for r in reports if r.status != "OK"]
    windows = {r.window_start for r in reports if r.fills_matched}
    assert len(windows) >= 5
    # Every fill was matched once, on the base and on the quote balance.
    for asset in ("BTC", "USDT"):
        assert sum(r.fills_matched for r in reports if r.asset == asset) == len(session.fills)
    assert {r.asset for r in reports} >= {"BTC", "USDT"}


def test_lost_fill_breaks_exactly_its_window(session: Session) -> None:
    lost = session.fills[len(session.fills) // 2]
    reports, alerts, _ = run_recon(replay(session, lambda f: f is lost), run_main)
    broken = {(r.asset, r.window_start) for r in reports if r.status == "BREAK"}
    # The exchange's next snapshot anchors the window after: only the fill's window breaks.
    home = window_start(lost.ts, CFG.window_ns)
    assert broken == {("BTC", home), ("USDT", home)}
    btc = next(r for r in reports if r.status == "BREAK" and r.asset == "BTC")
    sign = 1 if lost.side == "buy" else -1
    base_fee = lost.fee if lost.fee_asset == "BTC" else 0.0
    assert btc.difference == pytest.approx(sign * lost.qty - base_fee, abs=1e-9)
    assert len([a for a in alerts if a.name == "BalanceReconciliationBreak"]) == 2


def test_one_and_two_workers_agree_on_the_exchange_session(session: Session) -> None:
    one, _, _ = run_recon(replay(session), lambda f: cluster_main(f, [], 0))
    two, _, _ = run_recon(
        replay(session), lambda f: cluster_main(f, [], 0, worker_count_per_proc=2)
    )
    assert ordered(one) == ordered(two) and one


def test_open_orders_against_fetch_open_orders() -> None:
    """Our view from the private stream vs the exchange's list: clean, then an order placed
    by hand (orphan) and one canceled behind our back (missing)."""
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        s = trade_session(ex, rounds=6)

        async def meddle() -> None:
            c = ex.client()
            try:
                await c.load_markets()
                await c.create_order(
                    SYMBOL, "limit", "buy", 0.001, 50_000, {"clientOrderId": "by-hand"}
                )
                mine = [
                    o
                    for o in await c.fetch_open_orders(SYMBOL)
                    if o["clientOrderId"].startswith("mf-q")
                ]
                await c.cancel_order(mine[0]["id"], SYMBOL)
            finally:
                await c.close()

        view = OpenOrderView()
        for ev in s.orders:
            view.apply(ev)
        now = ex.call(lambda srv: srv.engine.time_ms) * 1_000_000

        def listing_flow(polls: int) -> list[Alert]:
            found: list[Alert] = []
            flow = Dataflow("orders_exchange")
            orders = op.input("orders", flow, TestingSource(s.orders))
            source = OpenOrdersSource(
                ex.client,
                venue="local",
                account="main",
                symbols=(SYMBOL,),
                interval_s=0.1,
                polls=polls,
            )
            lists = op.input("lists", flow, source)
            # The poller stamps listings with the wall clock; the replayed exchange runs on the
            # recording's clock, so re-stamp at the exchange's own time for the grace check.
            lists = op.map(
                "exchange_time",
                lists,
                lambda x: ExchangeOpenOrders(
                    x.venue, x.account, now + 10 * NS, x.orders, x.symbols
                ),
            )
            out = reconcile_orders_op("recon_orders", orders, lists, CFG)
            op.output("alerts", out.alerts, TestingSink(found))
            run_main(flow)
            return found

        assert view.open_orders(), "the session leaves quotes resting"
        # A failed poll is retried, not fatal: the one listing asked for still arrives.
        ex.inject("unavailable", path="/api/v3/openOrders")
        assert listing_flow(polls=1) == []
        assert ex.call(lambda srv: srv.faults.pending()) == 0
        asyncio.run(meddle())
        alerts = {a.name: a for a in listing_flow(polls=1)}
        assert set(alerts) == {"OpenOrderOrphan", "OpenOrderMissing"}
        assert "by-hand" in alerts["OpenOrderOrphan"].message
        # And an exchange that lists nothing: every order we hold open is missing.
        diff = reconcile_open_orders(
            view,
            ExchangeOpenOrders("local", "main", now + 10 * NS, ()),
            grace_ns=0,
            max_view_lag_ns=60 * NS,
        )
        assert len(diff.missing) == len(view.open_orders())
