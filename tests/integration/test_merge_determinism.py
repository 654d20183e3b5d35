"""Deterministic by default: the quoter, risk and reconciliation services, replayed with
``MAKERFLOW_TAIL=0`` and the shipped defaults, write the same outputs per key whatever the
order in which their input topics are read.

Each service runs twice on a fresh broker holding the same recorded inputs on 2-partition
topics: once with its busiest topic produced long before the others and ``run_main``, once
with it produced last and a 2-worker cluster. On main, which merged the topics in arrival
order, each service's outputs changed with that order (and the quoter's no longer matched
the pure quoter fed the events in event time).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow

from makerflow.broker import Broker
from makerflow.flows import quoter as quoter_flow
from makerflow.flows import reconcile as reconcile_flow
from makerflow.flows import risk as risk_flow
from makerflow.flows.common import FlowSettings
from makerflow.kafka_admin import Sender, ensure_topics, producer, read_topic
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting import MERGE_INPUTS, merge_inputs
from makerflow.operators.risk_limits import MarketConfig as RiskMarket
from makerflow.operators.risk_limits import MarketLimits, PortfolioLimits, RiskConfig
from makerflow.schemas import topics as t
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    BalanceSnapshot,
    ControlCommand,
    Fill,
    IndexPrice,
    OrderEvent,
    RiskState,
    Tick,
    Transfer,
)
from makerflow.schemas.topics import Topic
from makerflow.sources.private_stream import PrivateStreamConfig
from tests.conftest import RUNNERS
from tests.flow.test_quoter_flow import CONFIG as QUOTING
from tests.flow.test_quoter_flow import scenario
from tests.recon_sessions import NS, T0, W, deposit, exchange_session, fill
from tests.risk_support import recorded_ticks, with_jump
from tests.risk_two_markets import end_markers, run, two_market_config, two_markets

pytestmark = pytest.mark.slow

Outputs = dict[str, dict[bytes, list[bytes]]]


def replay(
    tmp_path: Path,
    name: str,
    inputs: dict[Topic[Any], list[Any]],
    first: Topic[Any],
    build: Callable[[FlowSettings], Dataflow],
    runner: str,
    outputs: list[Topic[Any]],
) -> Outputs:
    """Produce ``inputs`` (``first`` long before the others under ``run_main``, last
    otherwise), replay them with ``build`` under ``runner``; each output topic's messages
    per key, in order."""
    with Broker(log_path=tmp_path / f"{name}-{runner}.log") as b:
        brokers = (b.bootstrap,)
        ensure_topics(brokers, list(t.TOPICS), partitions=2)
        order = [first, *(tp for tp in inputs if tp != first)]
        if runner != "run_main":
            order = order[::-1]
        out = Sender(producer(brokers))
        for tp in order:
            for ev in inputs[tp]:
                out.send(tp.name, tp.key_of(ev) or None, encode(ev))
            out.flush()  # this topic is all in before the next one starts
        RUNNERS[runner](build(FlowSettings(brokers=brokers, tail=False)))
        return read_outputs(brokers, [tp.name for tp in outputs])


def read_outputs(brokers: tuple[str, ...], names: list[str]) -> Outputs:
    """Every message of the topics ``names`` (the flow has ended: all are in), per topic
    and key, in order."""
    got: Outputs = {n: {} for n in names}
    for n in names:
        for m in read_topic(brokers, n, idle=0.2, timeout=60):
            got[n].setdefault(bytes(m.key() or b""), []).append(bytes(m.value()))
    return got


def twice(
    tmp_path: Path,
    name: str,
    inputs: dict[Topic[Any], list[Any]],
    first: Topic[Any],
    build: Callable[[FlowSettings], Dataflow],
    outputs: list[Topic[Any]],
) -> tuple[Outputs, Outputs]:
    """Two replays: ``first`` produced first and one worker, then produced last and two."""
    return (
        replay(tmp_path, name, inputs, first, build, "run_main", outputs),
        replay(tmp_path, name, inputs, first, build, "cluster_2", outputs),
    )


# --- the quoter -------------------------------------------------------------------------


def quoter_inputs() -> dict[Topic[Any], list[Any]]:
    """The quoter flow tests' scenario (recorded BTC ticks, ETH ticks, an index price, a
    fill, a global halt and resume, commands: refused without a key, so ``control`` reaches
    the merge as its end markers only) and risk states of a second scope."""
    events = scenario()
    extra = [
        RiskState(ts=events[i].ts + 1, scope="asset:ETH", status=status, reasons=("test",))
        for i, status in ((250, "HALTED"), (340, "ACTIVE"), (430, "HALTED"), (520, "ACTIVE"))
    ]
    by_topic: dict[Topic[Any], list[Any]] = {
        tp: []
        for tp in (t.TICKS, t.INDEX, t.RISK_STATE, t.ORDER_EVENTS, t.FILLS, t.CONTROL, t.BALANCES)
    }
    kinds = {
        Tick: t.TICKS,
        IndexPrice: t.INDEX,
        RiskState: t.RISK_STATE,
        OrderEvent: t.ORDER_EVENTS,
        Fill: t.FILLS,
        ControlCommand: t.CONTROL,
        BalanceSnapshot: t.BALANCES,
    }
    for ev in sorted([*events, *extra], key=lambda e: e.ts):
        by_topic[kinds[type(ev)]].append(ev)
    return by_topic


def event_time_intents(inputs: dict[Topic[Any], list[Any]]) -> dict[bytes, list[bytes]]:
    """The pure quoters' intents with each market's events in the merge's order (event
    time, then the fixed input order); commands are refused before the quoter."""
    out: dict[bytes, list[bytes]] = {}
    for m in QUOTING.markets:
        names = merge_inputs(m, MERGE_INPUTS)
        q = Quoter(m, QUOTING.params_for(m), id_namespace=QUOTING.id_namespace)
        mine = []
        for evs in inputs.values():
            for pos, ev in enumerate(evs):
                if isinstance(ev, Tick | Fill | OrderEvent) and ev.key == m.key:
                    name = {Tick: "ticks", Fill: "fills", OrderEvent: "orders"}[type(ev)]
                elif isinstance(ev, IndexPrice) and ev.basket == m.index_basket:
                    name = "index"
                elif isinstance(ev, RiskState) and f"risk|{ev.scope}" in names:
                    name = f"risk|{ev.scope}"
                else:
                    continue
                mine.append(((ev.ts, names.index(name), pos), ev))
        got: list[bytes] = []
        for _, ev in sorted(mine, key=lambda kv: kv[0]):
            with contextlib.suppress(ValueError):  # a bad tick: a dead letter in the flow
                got.extend(encode(i) for i in q.on_event(ev).intents)
        if got:
            out[m.key.encode()] = got
    return out


def test_quoter_replay_does_not_depend_on_topic_order_or_workers(tmp_path: Path) -> None:
    inputs = quoter_inputs()
    a, b = twice(
        tmp_path,
        "quoter",
        inputs,
        t.TICKS,
        lambda s: quoter_flow.build_flow(s, QUOTING),
        [t.ORDER_INTENTS],
    )
    intents = a[t.ORDER_INTENTS.name]
    assert sorted(intents) == [b"binance:BTC/USDT", b"binance:ETH/USDT"]
    assert a == b
    assert intents == event_time_intents(inputs)


# --- reconciliation -----------------------------------------------------------------------


def recon_inputs() -> dict[Topic[Any], list[Any]]:
    """Six windows of one account trading BTC/USDT and ETH/USDT (fees in base, quote and
    BNB), a deposit and a withdrawal, and the exchange's snapshots before each window ends."""
    rng = random.Random(3)
    events: list[Fill | Transfer] = []
    for k in range(6):
        for n in range(12):
            symbol, px = rng.choice((("BTC/USDT", 30_000.0), ("ETH/USDT", 2_000.0)))
            price = round(px * (1 + rng.uniform(-0.01, 0.01)), 2)
            qty = round(rng.uniform(0.001, 0.05), 5)
            fee_asset = rng.choice((symbol.split("/")[0], "USDT", "BNB"))
            fee = round({"USDT": price * qty * 0.001, "BNB": 0.0001}.get(fee_asset, qty / 1e3), 8)
            ts = T0 + k * W + rng.randrange(1, 59_000) * 1_000_000
            side = rng.choice(("buy", "sell"))
            events.append(fill(f"x{k}-{n}", ts, side, price, qty, fee, fee_asset, symbol=symbol))
    events += [deposit(T0 + 90 * NS, "USDT", 1_000.0, "d1"), deposit(T0 + 200 * NS, "BTC", -0.1)]
    opening = {"BTC": 5.0, "ETH": 50.0, "USDT": 500_000.0, "BNB": 10.0}
    by_topic: dict[Topic[Any], list[Any]] = {t.FILLS: [], t.BALANCES: [], t.TRANSFERS: []}
    kinds = {Fill: t.FILLS, BalanceSnapshot: t.BALANCES, Transfer: t.TRANSFERS}
    for ev in exchange_session(events, opening, windows=6):
        by_topic[kinds[type(ev)]].append(ev)
    return by_topic


def test_reconcile_replay_does_not_depend_on_topic_order_or_workers(tmp_path: Path) -> None:
    config = reconcile_flow.ReconFlowConfig(
        exchange=PrivateStreamConfig(venue="local", symbols=("BTC/USDT", "ETH/USDT"))
    )
    a, b = twice(
        tmp_path,
        "reconcile",
        recon_inputs(),
        t.BALANCES,
        lambda s: reconcile_flow.build_flow(s, config),
        [t.RECON_REPORTS],
    )
    reports = a[t.RECON_REPORTS.name]
    assert sorted(reports) == [b"main:BNB", b"main:BTC", b"main:ETH", b"main:USDT"]
    assert all(len(r) >= 6 for r in reports.values())
    assert a == b


# --- risk ---------------------------------------------------------------------------------


def risk_inputs() -> dict[Topic[Any], list[Any]]:
    """A thousand recorded BTC/USDT ticks with a 10 % jump (the market halts), a fill
    every 150 ticks and an index price every 100 to mark them."""
    ticks = with_jump(recorded_ticks(1000), at=600)
    fills = [
        Fill(
            ts=tk.ts,
            venue="binance",
            symbol="BTC/USDT",
            trade_id=f"r{i}",
            side="buy" if i % 300 else "sell",
            price=tk.bid,
            qty=0.002,
        )
        for i, tk in enumerate(ticks)
        if i % 150 == 0
    ]
    index = [
        IndexPrice(ts=tk.ts, basket="BTC", quote="USD", price=tk.mid, constituents=())
        for i, tk in enumerate(ticks)
        if i % 100 == 50
    ]
    return {t.TICKS: ticks, t.FILLS: fills, t.INDEX: index}


def test_risk_replay_does_not_depend_on_topic_order_or_workers(tmp_path: Path) -> None:
    config = RiskConfig(
        window_ms=2_000,
        slide_ms=200,
        markets=(
            RiskMarket(
                venue="binance",
                symbol="BTC/USDT",
                index_basket="BTC",
                limits=MarketLimits(max_move_bps=500.0),
            ),
        ),
    )
    a, b = twice(
        tmp_path,
        "risk",
        risk_inputs(),
        t.TICKS,
        lambda s: risk_flow.build_flow(s, config, wall_clock=False),
        [t.RISK_STATE, t.ALERTS, t.ORDER_INTENTS],
    )
    assert a == b
    states = a[t.RISK_STATE.name]
    assert any(b"HALTED" in v for v in states[b"market:binance:BTC/USDT"])


def two_market_inputs() -> dict[Topic[Any], list[Any]]:
    """BTC/USDT and SOL/USDT (every tenth of the same recorded ticks, 3 ms later; its key is
    on the other partition of a 2-partition topic, so the source's first batches of 1000
    take all of SOL and only part of BTC) in one account, each bought ten times and falling
    10 % (BTC at its 1500th tick, SOL at the time of BTC's 2000th)."""
    m = two_markets(
        2_500,
        btc_jump_at=1_500,
        sol_jump_at=2_000,
        sol_shift_ns=3_000_000,
        sol_every=10,
        btc_buys=(0.05, 300),
        sol_buys=(0.75, 30),
    )
    return {t.TICKS: sorted([*m.btc, *m.sol], key=lambda tk: tk.ts), t.FILLS: m.fills}


def test_risk_account_and_global_replay_does_not_depend_on_order_or_workers(
    tmp_path: Path,
) -> None:
    """The later stages (per account, ``global``, the scopes' kill switches) take what
    several markets' stages say: in a replay they merge them in event time too."""
    config = two_market_config(
        account=PortfolioLimits(max_drawdown=250.0), global_limits=PortfolioLimits(max_loss=400.0)
    )
    a, b = twice(
        tmp_path,
        "risk2",
        two_market_inputs(),
        t.TICKS,
        lambda s: risk_flow.build_flow(s, config, wall_clock=False),
        [t.RISK_STATE, t.ALERTS, t.ORDER_INTENTS],
    )
    states = a[t.RISK_STATE.name]
    assert any(b"HALTED" in v for v in states[b"account:main"])
    assert any(b"HALTED" in v for v in states[b"global"])
    assert a == b
    # And what the inputs give in event time through one source (no broker, one worker).
    inputs = two_market_inputs()
    in_time = sorted((ev for evs in inputs.values() for ev in evs), key=lambda e: e.ts)
    one = run([*in_time, *end_markers()], config)
    expected = {
        t.RISK_STATE.name: by_key(t.RISK_STATE, one.states),
        t.ALERTS.name: by_key(t.ALERTS, one.alerts),
        t.ORDER_INTENTS.name: by_key(t.ORDER_INTENTS, one.intents),
    }
    assert {n: v for n, v in a.items() if v} == {n: v for n, v in expected.items() if v}


def by_key(tp: Topic[Any], evs: list[Any]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for ev in evs:
        out.setdefault((tp.key_of(ev) or "").encode(), []).append(encode(ev))
    return out
