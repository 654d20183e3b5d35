"""The quoter service: ticks, index, risk.state, orders.events, fills, balances and control
in; orders.intents, quotes, alerts (unconfirmed cancels) and
inventory.corrections out.

Run it with ``python -m bytewax.run makerflow.flows.quoter:flow`` (``-w N`` for N workers,
one per partition of the market topics). Settings come from the environment (see
:class:`~makerflow.flows.common.FlowSettings`); the markets and model parameters from the
TOML file named by ``MAKERFLOW_CONFIG`` (see :mod:`makerflow.operators.quoting_config`),
defaults when unset.

Ordering: tailing, each market's events are quoted in arrival order (latency first; see the
README's *Operations*). With ``MAKERFLOW_TAIL=0`` (a replay) they are merged in event time
first (:mod:`makerflow.operators.merge_logic`), so a rerun gives the same intents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.control_auth import ControlKey, verified_control
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import QuotingConfig, load_quoting_config
from makerflow.schemas import topics as t
from makerflow.schemas.topics import Topic


@dataclass(frozen=True)
class QuoterTopics:
    """The topics the quoter reads and writes (the registry's, unless a test renames them)."""

    ticks: Topic[Any] = t.TICKS
    index: Topic[Any] = t.INDEX
    risk: Topic[Any] = t.RISK_STATE
    order_events: Topic[Any] = t.ORDER_EVENTS
    fills: Topic[Any] = t.FILLS
    control: Topic[Any] = t.CONTROL
    intents: Topic[Any] = t.ORDER_INTENTS
    quotes: Topic[Any] = t.QUOTES
    balances: Topic[Any] = t.BALANCES
    alerts: Topic[Any] = t.ALERTS
    corrections: Topic[Any] = t.INVENTORY_CORRECTIONS


def build_flow(
    settings: FlowSettings,
    config: QuotingConfig,
    topics: QuoterTopics | None = None,
    flow_id: str = "quoter",
) -> Dataflow:
    """The quoter dataflow reading and writing Kafka."""
    tp = topics or QuoterTopics()
    flow = Dataflow(flow_id)
    io = TopicIO(flow, settings)
    bounded = not settings.tail

    def read(topic: Topic[Any]) -> Any:
        # A replay merges the inputs in event time; their end markers let it go on
        # without waiting for the end of the whole input.
        return io.read(topic, end_markers=bounded)

    control = verified_control("control_auth", read(tp.control), ControlKey.load())
    out = quoting_op(
        "quoting",
        read(tp.ticks),
        read(tp.index),
        read(tp.risk),
        read(tp.order_events),
        read(tp.fills),
        control.oks,
        config,
        balances=read(tp.balances),
        bounded=bounded,
    )
    io.write(out.intents, tp.intents)
    io.write(out.ladders, tp.quotes)
    io.write(out.alerts, tp.alerts)
    io.write(out.corrections, tp.corrections)
    io.dead_letters([out.dead_letters, control.errs])
    return flow


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    return build_flow(settings, load_quoting_config(settings.config_path))


__getattr__ = lazy_flow(_flow_from_env)
