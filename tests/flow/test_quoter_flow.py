"""The quoting operator in a Bytewax flow, under run_main and cluster_main with one and two
workers, and the quoter service flow against a real Kafka broker (tansu).

Every input goes through ONE TestingSource in event-time order (batch size 1, zero epoch
interval) and is split by type, so each event reaches its market's quoter in the order a
backtest replays it; the flow must then give, per market, exactly the intents the pure
Quoter gives for the same events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow import metrics
from makerflow.flows.common import FlowSettings
from makerflow.flows.quoter import QuoterTopics, build_flow
from makerflow.kafka_admin import ensure_topics, produce_events, produce_raw, read_topic
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.schemas import topics as reg
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    ControlCommand,
    DeadLetter,
    Fill,
    IndexPrice,
    OrderEvent,
    OrderIntent,
    QuoteLadder,
    RiskState,
    Tick,
)
from makerflow.schemas.topics import Topic
from tests.conftest import RUNNERS
from tests.quoting_support import load_ticks, make_tick

NS = 1_000_000_000


@pytest.fixture(params=list(RUNNERS))
def runner(request: pytest.FixtureRequest) -> Callable[[Dataflow], None]:
    return RUNNERS[request.param]


BTC = MarketConfig(
    venue="binance",
    symbol="BTC/USDT",
    tick_size=0.01,
    lot_size=0.00001,
    min_qty=0.00001,
    min_notional=5.0,
    index_basket="BTC",
)
ETH = MarketConfig(
    venue="binance",
    symbol="ETH/USDT",
    tick_size=0.01,
    lot_size=0.0001,
    min_notional=5.0,
    index_basket="ETH",
    params={"order_size": 0.01, "gamma": 0.05, "kappa": 2.0},
)
CONFIG = QuotingConfig(
    markets=(BTC, ETH),
    defaults=QuotingParams(warmup_s=0.0, sigma_initial=4.0, levels=2),
    id_namespace="flowtest",
)


def scenario() -> list[Any]:
    """600 recorded BTC ticks with synthetic ETH ticks between them, a fill, an index price,
    a halt of everything, a resume, a parameter change for ETH only, and bad input."""
    btc = load_ticks(600)
    t0 = btc[0].ts
    events: list[Any] = []
    for i, t in enumerate(btc):
        events.append(t)
        if i % 20 == 0:
            px = 2600.0 + (i % 7) * 0.05
            events.append(make_tick(t.ts, px, px + 0.02, symbol="ETH/USDT"))
        if i == 100:
            events.append(
                IndexPrice(ts=t.ts, basket="BTC", quote="USD", price=t.mid, constituents=())
            )
        if i == 150:
            events.append(
                Fill(
                    ts=t.ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    trade_id="f1",
                    side="buy",
                    price=t.bid,
                    qty=0.003,
                )
            )
        if i == 200:
            events.append(RiskState(ts=t.ts, scope="global", status="HALTED", reasons=("test",)))
        if i == 300:
            events.append(RiskState(ts=t.ts, scope="global", status="ACTIVE"))
        if i == 350:
            events.append(
                ControlCommand(
                    ts=t.ts, command="set_params", scope="asset:ETH", params={"levels": 1}
                )
            )
        if i == 400:
            bad_tick = make_tick(t.ts, float("nan"), t.ask)
            events.append(bad_tick)
            events.append(ControlCommand(ts=t.ts, command="halt", scope="galaxy"))
            events.append(
                ControlCommand(
                    ts=t.ts, command="set_params", scope="global", params={"gamma": -1.0}
                )
            )
    assert events[0].ts == t0
    return events


class Out:
    def __init__(self) -> None:
        self.intents: list[OrderIntent] = []
        self.ladders: list[QuoteLadder] = []
        self.dead: list[DeadLetter] = []


def build(events: list[Any], config: QuotingConfig = CONFIG) -> tuple[Dataflow, Out]:
    flow = Dataflow("quoting_test")
    src = op.input("in", flow, TestingSource(events, batch_size=1))

    def only(step: str, kind: type) -> Any:
        return op.filter(step, src, lambda e: isinstance(e, kind))

    out = quoting_op(
        "quoting",
        only("ticks", Tick),
        only("index", IndexPrice),
        only("risk", RiskState),
        only("orders", OrderEvent),
        only("fills", Fill),
        only("control", ControlCommand),
        config,
    )
    res = Out()
    op.output("intents", out.intents, TestingSink(res.intents))
    op.output("ladders", out.ladders, TestingSink(res.ladders))
    op.output("dead", out.dead_letters, TestingSink(res.dead))
    return flow, res


def pure(events: list[Any], config: QuotingConfig = CONFIG) -> dict[str, list[bytes]]:
    """What the pure quoters give, per market, for the same events in the same order."""
    quoters = {
        m.key: Quoter(m, config.params_for(m), id_namespace=config.id_namespace)
        for m in config.markets
    }
    out: dict[str, list[bytes]] = {k: [] for k in quoters}
    for ev in events:
        for key, q in quoters.items():
            m = q.market
            concerns = (
                (isinstance(ev, Tick | Fill | OrderEvent) and ev.key == key)
                or (isinstance(ev, IndexPrice) and ev.basket == m.index_basket)
                or isinstance(ev, RiskState | ControlCommand)
            )
            if not concerns:
                continue
            with contextlib.suppress(ValueError):  # bad input: a dead letter in the flow
                out[key].extend(encode(i) for i in q.on_event(ev).intents)
    return out


def by_market(intents: list[OrderIntent]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {m.key: [] for m in CONFIG.markets}
    for i in intents:
        out[i.key].append(encode(i))
    return out


def test_flow_gives_the_pure_quoters_intents_byte_for_byte(runner) -> None:
    events = scenario()
    flow, res = build(events)
    latency_before = _latency_count()
    runner(flow)
    assert by_market(res.intents) == pure(events)
    n_ticks = sum(1 for e in events if isinstance(e, Tick)) - 1  # the NaN tick is refused
    assert _latency_count() - latency_before == n_ticks


def test_halt_reaches_every_market_and_cancels_all_their_orders_at_once(runner) -> None:
    events = scenario()
    flow, res = build(events)
    runner(flow)
    halt_ts = next(e.ts for e in events if isinstance(e, RiskState))
    for m in CONFIG.markets:
        mine = [i for i in res.intents if i.key == m.key]
        at_halt = [i for i in mine if i.ts == halt_ts and "halt" in i.reason]
        placed = {i.client_order_id for i in mine if i.action == "place" and i.ts < halt_ts}
        canceled_before = {
            i.client_order_id for i in mine if i.action == "cancel" and i.ts < halt_ts
        }
        assert at_halt[0].action == "cancel_all"
        # every order still quoting is cancelled by id; so is one whose earlier cancel
        # (a refresh) is not confirmed yet: it may rest until the venue says otherwise
        by_id = {i.client_order_id for i in at_halt[1:]}
        assert placed - canceled_before <= by_id <= placed
        resume_ts = [e.ts for e in events if isinstance(e, RiskState)][1]
        # nothing is placed while halted, quoting comes back on resume
        assert not [i for i in mine if i.action == "place" and halt_ts <= i.ts < resume_ts]
        assert [i for i in mine if i.action == "place" and i.ts == resume_ts]


def test_routing_index_and_params_only_reach_their_markets(runner) -> None:
    events = scenario()
    flow, res = build(events)
    runner(flow)
    change_ts = next(
        e.ts for e in events if isinstance(e, ControlCommand) and e.command == "set_params"
    )
    eth_after = [lad for lad in res.ladders if lad.symbol == "ETH/USDT" and lad.ts >= change_ts]
    btc_after = [lad for lad in res.ladders if lad.symbol == "BTC/USDT" and lad.ts >= change_ts]
    assert eth_after and all(len(lad.bids) == 1 for lad in eth_after)
    assert btc_after and all(len(lad.bids) == 2 for lad in btc_after)


def test_bad_input_becomes_dead_letters_with_reasons(runner) -> None:
    events = scenario()
    flow, res = build(events)
    before = metrics.DEAD_LETTERS.labels(step="quoting_test.quoting")._value.get()
    runner(flow)
    reasons = sorted(d.reason for d in res.dead)
    assert len(reasons) == 4, reasons  # NaN tick, bad scope, bad gamma for each of 2 markets
    assert any("unusable prices" in r for r in reasons)
    assert any("bad scope 'galaxy'" in r for r in reasons)
    assert sum("gamma" in r for r in reasons) == 2
    assert all(d.step == "quoting_test.quoting" and d.raw for d in res.dead)
    after = metrics.DEAD_LETTERS.labels(step="quoting_test.quoting")._value.get()
    assert after - before == 4


def _latency_count() -> float:
    for metric in metrics.TICK_TO_QUOTE_LATENCY.collect():
        for s in metric.samples:
            if s.name.endswith("_count"):
                return s.value
    return 0.0


@pytest.mark.slow
def test_quoter_service_flow_on_kafka(broker, unique) -> None:
    names = {f: unique(f"q.{f}") for f in QuoterTopics.__dataclass_fields__}
    topics = QuoterTopics(
        **{
            f: Topic(names[f], t.key, t.value_type)
            for f, t in (
                ("ticks", reg.TICKS),
                ("index", reg.INDEX),
                ("risk", reg.RISK_STATE),
                ("order_events", reg.ORDER_EVENTS),
                ("fills", reg.FILLS),
                ("control", reg.CONTROL),
                ("intents", reg.ORDER_INTENTS),
                ("quotes", reg.QUOTES),
                ("balances", reg.BALANCES),
                ("alerts", reg.ALERTS),
                ("corrections", reg.INVENTORY_CORRECTIONS),
            )
        }
    )
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [*names.values(), reg.DEAD_LETTERS.name])
    ticks = load_ticks(300)
    produce_events(brokers, topics.ticks, ticks)
    produce_raw(brokers, names["ticks"], [(b"binance:BTC/USDT", b'{"type":"tick","ts":"x"}')])
    settings = FlowSettings(brokers=brokers, tail=False)
    run_main(build_flow(settings, CONFIG, topics, flow_id="quoter_kafka"))

    quoter = Quoter(BTC, CONFIG.params_for(BTC), id_namespace="flowtest")
    expected = [encode(i) for t in ticks for i in quoter.on_tick(t).intents]
    got = read_topic(brokers, names["intents"], expected=len(expected), timeout=30)
    assert [m.value() for m in got] == expected
    assert {m.key() for m in got} == {b"binance:BTC/USDT"}
    ladders = read_topic(brokers, names["quotes"], idle=1.0, timeout=30)
    assert ladders and all(m.key() == b"binance:BTC/USDT" for m in ladders)
    dead = [
        reg.DEAD_LETTERS.codec.decode(m.value())
        for m in read_topic(brokers, reg.DEAD_LETTERS.name, idle=1.0, timeout=30)
    ]
    assert [d for d in dead if d.topic == names["ticks"]]


def test_resume_after_a_crash_replays_identical_intents(tmp_path) -> None:
    """With recovery on, a crash mid-stream and a resume give, once the replayed intents of
    the interrupted epoch are dropped by client order id (as the exchange sink does), exactly
    the intents of an uninterrupted run: the quoter's snapshot restores its state."""
    events: list[Any] = scenario()[:450]  # through the halt and the resume
    crash_at = len(events) // 2
    with_abort = [*events[:crash_at], TestingSource.ABORT(), *events[crash_at:]]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    runs: list[list[OrderIntent]] = []
    for _ in range(2):  # the first run stops at the abort, the second resumes
        flow, res = build(with_abort)
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
        runs.append(res.intents)
    first, second = runs
    crash_ts = events[crash_at].ts
    assert first and max(i.ts for i in first) <= crash_ts  # it did stop at the crash
    # the second run resumed from the snapshot near the crash, not from the beginning
    assert second and not [i for i in second if i.reason.startswith("start:")]
    assert min(i.ts for i in second) >= events[crash_at - 10].ts
    replayed = by_market(list(dict.fromkeys(first + second)))
    assert replayed == pure(events)


def test_balances_re_anchor_inventory_and_orphans_are_left_to_execution_in_the_flow(runner) -> None:
    from makerflow.schemas.events import Alert, BalanceSnapshot, InventoryCorrection

    ticks = load_ticks(60)
    t0 = ticks[0].ts

    def bal(ts: int, total: float) -> BalanceSnapshot:
        return BalanceSnapshot(ts=ts, venue="binance", asset="BTC", free=total, total=total)

    events: list[Any] = [*ticks[:10], bal(ticks[9].ts, 1.0)]
    events.append(
        Fill(
            ts=ticks[10].ts,
            venue="binance",
            symbol="BTC/USDT",
            trade_id="b1",
            side="buy",
            price=ticks[10].bid,
            qty=0.002,
            fee=0.000002,
            fee_asset="BTC",
        )
    )
    events += ticks[10:30]
    events.append(bal(ticks[29].ts, 1.0015))  # our fills say 1.001998: 0.0005 missing
    events.append(
        OrderEvent(
            ts=ticks[30].ts,
            venue="binance",
            symbol="BTC/USDT",
            client_order_id="mf-0000000000-s0-9",
            status="ack",
            side="sell",
            price=ticks[30].ask,
            qty=0.001,
        )
    )
    events += ticks[30:]
    flow = Dataflow("quoting_balances")
    src = op.input("in", flow, TestingSource(events, batch_size=1))

    def only(step: str, kind: type) -> Any:
        return op.filter(step, src, lambda e: isinstance(e, kind))

    out = quoting_op(
        "quoting",
        only("ticks", Tick),
        only("index", IndexPrice),
        only("risk", RiskState),
        only("orders", OrderEvent),
        only("fills", Fill),
        only("control", ControlCommand),
        CONFIG,
        balances=only("balances", BalanceSnapshot),
    )
    corrections: list[InventoryCorrection] = []
    alerts: list[Alert] = []
    intents: list[OrderIntent] = []
    op.output("corrections", out.corrections, TestingSink(corrections))
    op.output("alerts", out.alerts, TestingSink(alerts))
    op.output("intents", out.intents, TestingSink(intents))
    runner(flow)
    assert len(corrections) == 1
    c = corrections[0]
    assert c.key == "binance:BTC/USDT" and c.asset == "BTC" and c.ts == ticks[29].ts
    assert c.before == pytest.approx(0.001998) and c.after == pytest.approx(0.0015)
    # Orphans are execution's (its sweep cancels and alerts once): the quoter stays silent.
    assert alerts == []
    assert intents and not [i for i in intents if i.client_order_id == "mf-0000000000-s0-9"]
    assert t0 < c.ts
