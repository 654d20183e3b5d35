"""The risk service: ticks, index, fills, orders.events, balances and control in;
risk.state, alerts and orders.intents (cancel-all on a halt) out.

Run with ``python -m bytewax.run makerflow.flows.risk:flow``. Settings come from the
environment (:class:`makerflow.flows.common.FlowSettings`); the risk config (limits, windows,
markets) from the TOML file in ``MAKERFLOW_CONFIG`` (:class:`RiskConfig`), defaults otherwise.
Metrics are served on ``MAKERFLOW_METRICS_PORT``. Control commands must be signed with the key
in ``MAKERFLOW_CONTROL_KEY_FILE`` / ``MAKERFLOW_CONTROL_KEY``
(:mod:`makerflow.operators.control_auth`); others are dead-lettered and alerted.
Market-data staleness is judged against the wall clock, read at the edge by
:class:`makerflow.sources.clock.WallClock`, unless
``MAKERFLOW_WALL_CLOCK=0`` (replays and backtests, whose data is old by design).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.control_auth import ControlKey, verified_control
from makerflow.operators.risk import risk_op
from makerflow.operators.risk_limits import RiskConfig
from makerflow.schemas.config import load_section
from makerflow.schemas.topics import (
    ALERTS,
    BALANCES,
    CONTROL,
    FILLS,
    INDEX,
    MD_QUALITY,
    ORDER_EVENTS,
    ORDER_INTENTS,
    RISK_STATE,
    TICKS,
    Topic,
)
from makerflow.sources.clock import WallClock


def build_flow(settings: FlowSettings, config: RiskConfig, *, wall_clock: bool = True) -> Dataflow:
    flow = Dataflow("risk")
    io = TopicIO(flow, settings)
    clock = None
    # A replay that ends has old data and must end: no wall clock then.
    if wall_clock and settings.tail:
        interval = timedelta(milliseconds=config.heartbeat_ms)
        clock = op.input("wall_clock", flow, WallClock(interval))
    bounded = not settings.tail

    def read(topic: Topic[Any]) -> Any:
        # A replay merges the inputs in event time; their end markers let it go on
        # without waiting for the end of the whole input.
        return io.read(topic, end_markers=bounded)

    control = verified_control("control_auth", read(CONTROL), ControlKey.load())
    out = risk_op(
        "risk",
        read(TICKS),
        read(INDEX),
        read(FILLS),
        read(ORDER_EVENTS),
        read(BALANCES),
        control.oks,
        config,
        clock=clock,
        quality=read(MD_QUALITY),
        bounded=bounded,
    )
    io.write(out.states, RISK_STATE)
    io.write(op.merge("all_alerts", out.alerts, out.audit, control.alerts), ALERTS)
    io.write(out.intents, ORDER_INTENTS)
    io.dead_letters([out.errs, control.errs])
    return flow


def _from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    config = load_section(settings.config_path, "risk", RiskConfig)
    # A replay that ends (MAKERFLOW_TAIL=0) has old data and must end: no wall clock then.
    wall_clock = settings.tail and os.environ.get("MAKERFLOW_WALL_CLOCK", "1") not in (
        "0",
        "false",
        "no",
    )
    return build_flow(settings, config, wall_clock=wall_clock)


__getattr__ = lazy_flow(_from_env)
