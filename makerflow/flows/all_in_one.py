"""The whole trading pipeline as one operator: the same operators the services run, wired
stream to stream instead of topic to topic.

``trading_pipeline`` is what the embedded demo and backtests run. Its inputs are streams,
so the caller decides where they come from (recorded files, Kafka topics, a live exchange);
its outputs are streams, so the caller decides where they go (files, Kafka, nowhere).

Wiring, as in the service map of the design::

    book, trades ─► ticks ─┬────────────────────────────► index ◄── dex prices
                           ├─► risk ◄── index, fills, orders, balances, control
                           └─► quoting ◄── index, risk states, orders, fills, control
    quoting intents + risk cancel-alls ─► execution ─► exchange
    fills, balances, transfers ─► reconciliation

A Bytewax dataflow has no cycles, so what the exchange does with our orders comes back the
way it does live: through the private stream (``orders``, ``fills``, ``balances`` inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, Stream

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.control_auth import ControlKey, verified_control
from makerflow.operators.index import index_op
from makerflow.operators.index_config import IndexConfig
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import QuotingConfig
from makerflow.operators.recon_config import ReconConfig
from makerflow.operators.reconcile import reconcile_op
from makerflow.operators.risk import risk_op
from makerflow.operators.risk_gate import GateConfig, risk_gate
from makerflow.operators.risk_limits import RiskConfig
from makerflow.operators.staleness import Heartbeat
from makerflow.operators.ticks import TicksConfig, ticks_op
from makerflow.schemas import topics as t
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    Bar,
    BookDelta,
    BookSnapshot,
    ControlCommand,
    DataQuality,
    DeadLetter,
    DexPrice,
    Fill,
    IndexPrice,
    InventoryCorrection,
    OraclePrice,
    OrderEvent,
    OrderIntent,
    QuoteLadder,
    ReconReport,
    RiskState,
    Tick,
    Trade,
    Transfer,
)
from makerflow.sinks.exchange import (
    Credentials,
    ExchangeSinkConfig,
    execute_intents,
    make_ccxt_client,
)
from makerflow.sinks.flatten import FlattenConfig, flatten_on_halt
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.clock import WallClock
from makerflow.sources.empty import EmptySource
from makerflow.sources.loopback import Loopback


class PipelineConfig(Config, frozen=True, kw_only=True):
    """Every service's configuration, one table each (the same tables the services read)."""

    ticks: TicksConfig = TicksConfig()
    index: IndexConfig = IndexConfig()
    quoting: QuotingConfig = QuotingConfig()
    risk: RiskConfig = RiskConfig()
    recon: ReconConfig = ReconConfig()
    exchange: ExchangeSinkConfig = ExchangeSinkConfig()
    gate: GateConfig = GateConfig()
    """The risk gate in front of execution; its ``markets`` default to risk's markets."""
    flatten: FlattenConfig = FlattenConfig()
    """With ``execute``: on a halt, confirm at the venue that none of our orders remain."""
    execute: bool = True
    """Send intents to the exchange from this flow. Off, intents only leave as a stream (the
    ``orders.intents`` topic) for a separate execution service, or for a backtest's venue."""


@dataclass(frozen=True)
class PipelineInputs:
    """Where the pipeline's events come from; ``None`` means the run has no such input."""

    book: Stream[BookSnapshot | BookDelta]
    trades: Stream[Trade] | None = None
    dex: Stream[DexPrice | OraclePrice] | None = None
    control: Stream[ControlCommand] | None = None
    orders: Stream[OrderEvent] | None = None
    """Our orders' lives as the exchange reports them (the private stream)."""
    fills: Stream[Fill] | None = None
    balances: Stream[BalanceSnapshot] | None = None
    transfers: Stream[Transfer] | None = None
    clock: Stream[Heartbeat] | None = None
    """Wall-clock heartbeats for market-data staleness (live runs only)."""


@dataclass(frozen=True)
class PipelineOutputs:
    ticks: Stream[Tick]
    bars: Stream[Bar]
    quality: Stream[DataQuality]
    index: Stream[IndexPrice]
    risk_states: Stream[RiskState]
    alerts: Stream[Alert]
    ladders: Stream[QuoteLadder]
    intents: Stream[OrderIntent]
    """Every intent sent to execution: the quoter's and risk's cancel-alls."""
    executions: Stream[OrderEvent] | None
    """What execution did with them: acks, cancels, local and exchange rejects (``None``
    when the pipeline does not execute)."""
    recon_reports: Stream[ReconReport]
    dead_letters: Stream[DeadLetter]
    inventory_corrections: Stream[InventoryCorrection] | None = None
    """The quoter's positions re-anchored to the venue's balances."""


def _or_empty(step_id: str, flow: Dataflow, stream: Stream[Any] | None) -> Stream[Any]:
    return stream if stream is not None else op.input(step_id, flow, EmptySource())


def trading_pipeline(
    step_id: str,
    flow: Dataflow,
    inputs: PipelineInputs,
    config: PipelineConfig,
    *,
    credentials: Credentials | None = None,
    feedback: Loopback[OrderEvent] | None = None,
    stop: RunLatch | None = None,
) -> PipelineOutputs:
    """Ticks, index, risk, quoting, execution and reconciliation over ``inputs``.

    A plain function rather than an ``@operator``: Bytewax operators take streams only as
    direct arguments, and the pipeline's inputs are many and mostly optional. Its steps are
    named ``<step_id>_<service>``.

    ``feedback`` carries execution's own events (acks, local and exchange rejects) back into
    quoting and risk, as the ``orders.events`` topic does between services; ``stop`` ends that
    channel with the run.
    """

    def sid(name: str) -> str:
        return f"{step_id}_{name}"

    control = _or_empty(sid("no_control"), flow, inputs.control)
    orders = _or_empty(sid("no_orders"), flow, inputs.orders)
    fills = _or_empty(sid("no_fills"), flow, inputs.fills)
    balances = _or_empty(sid("no_balances"), flow, inputs.balances)
    dex = _or_empty(sid("no_dex"), flow, inputs.dex)
    transfers = _or_empty(sid("no_transfers"), flow, inputs.transfers)

    # What quoting and risk hear about our orders: the exchange's private stream, plus, in
    # one process, execution's own verdicts (a refused order never reaches the exchange).
    heard = orders
    if feedback is not None:
        source: Any = feedback.source()
        if stop is not None:
            source = bounded(source, stop, finite=False)
        verdicts = op.input(sid("execution_feedback"), flow, source)
        heard = op.merge(sid("order_events"), orders, verdicts)

    md = ticks_op(sid("ticks"), inputs.book, inputs.trades, config.ticks)
    index = index_op(sid("index"), md.ticks, dex, config.index)
    risk = risk_op(
        sid("risk"),
        md.ticks,
        index,
        fills,
        heard,
        balances,
        control,
        config.risk,
        inputs.clock,
        quality=md.quality,
    )
    quotes = quoting_op(
        sid("quoting"),
        md.ticks,
        index,
        risk.states,
        heard,
        fills,
        control,
        config.quoting,
        balances=balances,
    )
    intents = op.merge(sid("intents"), quotes.intents, risk.intents)
    executions = None
    confirmations: list[Stream[Alert]] = []
    if config.execute:
        gate_cfg = config.gate
        if not gate_cfg.markets:
            keys = tuple(m.key for m in config.risk.markets)
            gate_cfg = msgspec.structs.replace(gate_cfg, markets=keys)
        gate = risk_gate(sid("gate"), intents, risk.states, gate_cfg)
        executions = op.merge(
            sid("executions"),
            execute_intents(
                sid("execution"),
                gate.passed,
                config.exchange,
                updates=orders,
                credentials=credentials,
            ),
            gate.rejected,
        )
        if config.flatten.enabled and not config.exchange.dry_run:
            flat_cfg = config.flatten
            if not flat_cfg.markets:
                flat_cfg = msgspec.structs.replace(flat_cfg, markets=gate_cfg.markets)
            exchange = config.exchange
            confirmations.append(
                flatten_on_halt(
                    sid("flatten"),
                    risk.states,
                    flat_cfg,
                    lambda: make_ccxt_client(exchange, credentials),
                )
            )
        if feedback is not None:
            op.output(sid("execution_loopback"), executions, feedback.sink())
    recon = reconcile_op(sid("reconcile"), fills, balances, transfers, config.recon)
    alerts = op.merge(
        sid("alerts"), risk.alerts, risk.audit, recon.alerts, quotes.alerts, *confirmations
    )
    dead = op.merge(
        sid("dead_letters"), md.dead_letters, risk.errs, quotes.dead_letters, recon.dead_letters
    )
    return PipelineOutputs(
        ticks=md.ticks,
        bars=md.bars,
        quality=md.quality,
        index=index,
        risk_states=risk.states,
        alerts=alerts,
        ladders=quotes.ladders,
        intents=intents,
        executions=executions,
        recon_reports=recon.reports,
        dead_letters=dead,
        inventory_corrections=quotes.corrections,
    )


def build_flow(settings: FlowSettings, config: PipelineConfig | None = None) -> Dataflow:
    """The all-in-one service on Kafka: every input topic in, every output topic out, in one
    process. Without ``execute`` (the default here) intents go to ``orders.intents`` for the
    execution service; with ``MAKERFLOW_TAIL=0`` it replays recorded topics and stops (a
    backtest of the signal path: same operators, same outputs as the separate services)."""
    cfg = config or PipelineConfig(execute=False)
    flow = Dataflow("all_in_one")
    io = TopicIO(flow, settings)
    book_topic = io.read(t.MD_BOOK)
    control = verified_control("control_auth", io.read(t.CONTROL), ControlKey.load())
    # Live (tailing) runs judge market-data staleness against the wall clock; a replay that
    # ends has old data by design and no clock.
    clock = None
    if settings.tail:
        beat = timedelta(milliseconds=cfg.risk.heartbeat_ms)
        clock = op.input("wall_clock", flow, WallClock(beat))
    out = trading_pipeline(
        "pipeline",
        flow,
        PipelineInputs(
            book=book_topic,
            trades=io.read(t.MD_TRADES),
            dex=io.read(t.DEX_PRICES),
            control=control.oks,
            orders=io.read(t.ORDER_EVENTS),
            fills=io.read(t.FILLS),
            balances=io.read(t.BALANCES),
            transfers=io.read(t.TRANSFERS),
            clock=clock,
        ),
        cfg,
    )
    io.write(out.ticks, t.TICKS)
    io.write(out.bars, t.BARS)
    io.write(out.quality, t.MD_QUALITY)
    io.write(out.index, t.INDEX)
    io.write(out.risk_states, t.RISK_STATE)
    io.write(op.merge("all_alerts", out.alerts, control.alerts), t.ALERTS)
    io.write(out.ladders, t.QUOTES)
    io.write(out.intents, t.ORDER_INTENTS)
    io.write(out.recon_reports, t.RECON_REPORTS)
    if out.inventory_corrections is not None:
        io.write(out.inventory_corrections, t.INVENTORY_CORRECTIONS)
    if out.executions is not None:
        io.write(out.executions, t.ORDER_EVENTS)
    io.dead_letters([out.dead_letters, control.errs])
    return flow


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    return build_flow(settings, load_section(settings.config_path, "all_in_one", PipelineConfig))


__getattr__ = lazy_flow(_flow_from_env)
