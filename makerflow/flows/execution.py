"""The execution service: orders.intents in, executed on the exchange; the private stream
(our order updates, fills, balances) out to orders.events, fills and balances.

Run with ``python -m bytewax.run makerflow.flows.execution:flow``. Settings come from the
environment (:class:`makerflow.flows.common.FlowSettings`); the exchange sink and private
stream config from the TOML file in ``MAKERFLOW_CONFIG`` (:class:`ExecutionConfig`), defaults
otherwise. Credentials: ``MAKERFLOW_EXCHANGE_API_KEY`` / ``MAKERFLOW_EXCHANGE_SECRET`` or the
secret files the config names; ``MAKERFLOW_EXCHANGE_URL`` points both at a local exchange.
"""

from __future__ import annotations

import os

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO
from makerflow.schemas.config import Config, load_config
from makerflow.schemas.topics import BALANCES, FILLS, ORDER_EVENTS, ORDER_INTENTS
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig, execute_intents
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream


class ExecutionConfig(Config, frozen=True, kw_only=True):
    sink: ExchangeSinkConfig = ExchangeSinkConfig()
    private: PrivateStreamConfig = PrivateStreamConfig()
    private_stream: bool = True
    """Read the private stream (off for a dry run with no exchange behind it)."""


def build_flow(
    settings: FlowSettings,
    config: ExecutionConfig,
    *,
    credentials: Credentials | None = None,
) -> Dataflow:
    flow = Dataflow("execution")
    io = TopicIO(flow, settings)
    intents = io.read(ORDER_INTENTS)
    if config.private_stream:
        priv = private_stream("private", flow, config.private)
        acks = execute_intents(
            "execute", intents, config.sink, updates=priv.orders, credentials=credentials
        )
        io.write(op.merge("order_events", acks, priv.orders), ORDER_EVENTS)
        io.write(priv.fills, FILLS)
        io.write(priv.balances, BALANCES)
    else:
        acks = execute_intents("execute", intents, config.sink, credentials=credentials)
        io.write(acks, ORDER_EVENTS)
    io.dead_letters()
    return flow


def config_from_env(settings: FlowSettings) -> ExecutionConfig:
    config = (
        load_config(settings.config_path, ExecutionConfig)
        if settings.config_path
        else ExecutionConfig()
    )
    url = os.environ.get("MAKERFLOW_EXCHANGE_URL")
    if url:
        config = msgspec.structs.replace(
            config,
            sink=msgspec.structs.replace(config.sink, url=url),
            private=msgspec.structs.replace(config.private, url=url),
        )
    return config


_settings = FlowSettings.from_env()
flow = build_flow(_settings, config_from_env(_settings))
