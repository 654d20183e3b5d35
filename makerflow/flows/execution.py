"""The execution service: orders.intents in, executed on the exchange; the private stream
(our order updates, fills, balances) out to orders.events, fills and balances.

Run with ``python -m bytewax.run makerflow.flows.execution:flow``. Settings come from the
environment (:class:`makerflow.flows.common.FlowSettings`); the exchange sink and private
stream config from the TOML file in ``MAKERFLOW_CONFIG`` (:class:`ExecutionConfig`), defaults
otherwise. Credentials: ``MAKERFLOW_EXCHANGE_API_KEY`` / ``MAKERFLOW_EXCHANGE_SECRET`` or the
secret files the config names; ``MAKERFLOW_EXCHANGE_URL`` points both at a local exchange.

Every intent passes the risk gate (:mod:`makerflow.operators.risk_gate`) first: execution
reads ``risk.state`` and refuses places in halted, paused or unheard scopes (rejected
OrderEvents on ``orders.events``); cancels always pass.

After a restart (kill -9 with a recovery store, or none) nothing is placed twice and no stale
place is sent: see :mod:`makerflow.sinks.exchange_step`. SIGINT and SIGTERM close the
exchange clients and exit at once (:mod:`makerflow.sinks.exchange_shutdown`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.fill_dedup import unique_fills
from makerflow.operators.risk_gate import GateConfig, risk_gate
from makerflow.schemas import topics as t
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.topics import Topic
from makerflow.sinks import exchange_shutdown
from makerflow.sinks.exchange import (
    Credentials,
    ExchangeSinkConfig,
    execute_intents,
    make_ccxt_client,
)
from makerflow.sinks.flatten import FlattenConfig, flatten_on_halt
from makerflow.sources.bounded import RunLatch
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream


class ExecutionConfig(Config, frozen=True, kw_only=True):
    sink: ExchangeSinkConfig = ExchangeSinkConfig()
    private: PrivateStreamConfig = PrivateStreamConfig()
    private_stream: bool = True
    """Read the private stream (off for a dry run with no exchange behind it)."""
    gate: GateConfig = GateConfig()
    """The risk gate; its ``markets`` default to the private stream's symbols."""
    flatten: FlattenConfig = FlattenConfig()
    """On a halt, confirm at the venue that none of our orders remain (its ``markets``
    default to the gate's)."""

    def gate_config(self) -> GateConfig:
        if self.gate.markets:
            return self.gate
        markets = tuple(f"{self.sink.venue}:{s}" for s in self.private.symbols)
        return msgspec.structs.replace(self.gate, markets=markets)


@dataclass(frozen=True)
class ExecutionTopics:
    """The topics the execution service reads and writes (the registry's, unless a test
    renames them)."""

    intents: Topic[Any] = t.ORDER_INTENTS
    risk_states: Topic[Any] = t.RISK_STATE
    alerts: Topic[Any] = t.ALERTS
    order_events: Topic[Any] = t.ORDER_EVENTS
    fills: Topic[Any] = t.FILLS
    balances: Topic[Any] = t.BALANCES


def build_flow(
    settings: FlowSettings,
    config: ExecutionConfig,
    topics: ExecutionTopics | None = None,
    *,
    credentials: Credentials | None = None,
    stop: RunLatch | None = None,
    flow_id: str = "execution",
) -> Dataflow:
    """The execution dataflow reading and writing Kafka. ``stop`` ends the (live) private
    stream when that latch says so."""
    tp = topics or ExecutionTopics()
    flow = Dataflow(flow_id)
    io = TopicIO(flow, settings)
    gate_cfg = config.gate_config()
    # The markets this sink executes start (and reconcile) at once, intents or not.
    executed = tuple(m for m in gate_cfg.markets if m.split(":", 1)[0] == config.sink.venue)
    states = io.read(tp.risk_states)
    # Each partition of the intents topic marks every executed market once, when read to
    # its end: the start then knows the intents from before this run are in.
    read = io.read(tp.intents, caught_up_markers=True, mark_keys=executed, caught_up_once=True)
    gate = risk_gate("gate", read, states, gate_cfg)
    intents = gate.passed
    alerts = []
    if config.flatten.enabled and not config.sink.dry_run:
        flat_cfg = config.flatten
        if not flat_cfg.markets:
            flat_cfg = msgspec.structs.replace(flat_cfg, markets=gate_cfg.markets)
        sink = config.sink
        alerts.append(
            flatten_on_halt(
                "flatten", states, flat_cfg, lambda: make_ccxt_client(sink, credentials)
            )
        )
    if config.private_stream:
        priv = private_stream("private", flow, config.private, stop=stop)
        ex = execute_intents(
            "execute",
            intents,
            config.sink,
            updates=priv.orders,
            fill_updates=priv.fills,
            credentials=credentials,
            markets=executed,
            marked=True,
        )
        io.write(op.merge("order_events", ex.orders, priv.orders, gate.rejected), tp.order_events)
        # The sweep's fills and balances beside the private stream's: each trade once on
        # the topic (consumers would drop a repeat too), the newest balance wins.
        io.write(
            unique_fills("unique_fills", op.merge("all_fills", priv.fills, ex.fills)), tp.fills
        )
        io.write(op.merge("all_balances", priv.balances, ex.balances), tp.balances)
    else:
        ex = execute_intents(
            "execute", intents, config.sink, credentials=credentials, markets=executed, marked=True
        )
        io.write(op.merge("order_events", ex.orders, gate.rejected), tp.order_events)
        io.write(unique_fills("unique_fills", ex.fills), tp.fills)
        io.write(ex.balances, tp.balances)
    io.write(op.merge("all_alerts", ex.alerts, *alerts), tp.alerts)
    io.dead_letters()
    return flow


def config_from_env(settings: FlowSettings) -> ExecutionConfig:
    config = load_section(settings.config_path, "execution", ExecutionConfig)
    url = os.environ.get("MAKERFLOW_EXCHANGE_URL")
    if url:
        config = msgspec.structs.replace(
            config,
            sink=msgspec.structs.replace(config.sink, url=url),
            private=msgspec.structs.replace(config.private, url=url),
        )
    return config


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    flow = build_flow(settings, config_from_env(settings))
    # Ctrl-C and SIGTERM close the venue clients and exit at once (the service only: a
    # flow built in a test or the demo leaves its process's signals alone).
    exchange_shutdown.install()
    return flow


__getattr__ = lazy_flow(_flow_from_env)
