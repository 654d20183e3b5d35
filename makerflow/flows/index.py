"""The index service: ``ticks`` + ``dex.prices`` in (oracle answers ride on ``dex.prices``);
``index`` out, dead letters to the dead-letter topic.

Run it with ``python -m bytewax.run makerflow.flows.index:flow`` (``-w N`` for N workers; the
state is keyed by basket). Settings come from the environment (see
:class:`~makerflow.flows.common.FlowSettings`); the baskets and rules from the TOML file named
by ``MAKERFLOW_CONFIG`` (its ``[index]`` table, an
:class:`~makerflow.operators.index_config.IndexConfig`), BTC and ETH baskets in USDT when unset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.index import index_op
from makerflow.operators.index_config import IndexConfig, load_index_config
from makerflow.schemas import topics as t
from makerflow.schemas.topics import Topic


@dataclass(frozen=True)
class IndexTopics:
    """The topics the index service reads and writes (the registry's unless renamed)."""

    ticks: Topic[Any] = t.TICKS
    dex: Topic[Any] = t.DEX_PRICES
    index: Topic[Any] = t.INDEX


def build_flow(
    settings: FlowSettings,
    config: IndexConfig | None = None,
    topics: IndexTopics | None = None,
    flow_id: str = "index",
) -> Dataflow:
    """The index dataflow reading and writing Kafka."""
    tp = topics or IndexTopics()
    flow = Dataflow(flow_id)
    io = TopicIO(flow, settings)
    prices = index_op("index", io.read(tp.ticks), io.read(tp.dex), config or IndexConfig())
    io.write(prices, tp.index)
    io.dead_letters()
    return flow


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    return build_flow(settings, load_index_config(settings.config_path))


__getattr__ = lazy_flow(_flow_from_env)
