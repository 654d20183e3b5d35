"""The DEX ingest service: Uniswap V2 pairs, Uniswap V3 pools and Chainlink feeds read over
JSON-RPC; their prices and answers out on ``dex.prices`` (unusable pool state to the
dead-letter topic).

Run it with ``MAKERFLOW_CONFIG=dex.toml python -m bytewax.run makerflow.flows.dex_ingest:flow``
(``-w N`` spreads the pools and feeds, one partition each, over N workers). The TOML file's
``[dex_ingest]`` table (or the whole file) is a
:class:`~makerflow.sources.web3_config.Web3SourceConfig`: the node's ``rpc_url`` and the
``[[dex_ingest.pools]]`` / ``[[dex_ingest.feeds]]`` to read. ``makerflow chain --config-out
dex.toml`` writes one for the local chain.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.schemas import topics as t
from makerflow.schemas.config import load_section
from makerflow.schemas.topics import Topic
from makerflow.sources.web3_config import Web3SourceConfig
from makerflow.sources.web3_prices import web3_prices_input


def load_dex_config(path: str | Path) -> Web3SourceConfig:
    """The ``[dex_ingest]`` table of a TOML file (or the whole file) as a source config."""
    return load_section(path, "dex_ingest", Web3SourceConfig)


def dump_dex_config(config: Web3SourceConfig) -> str:
    """``config`` as the TOML :func:`load_dex_config` reads."""
    lines = ["[dex_ingest]"]
    body = msgspec.to_builtins(config)
    lines += [f"{k} = {_toml(v)}" for k, v in body.items() if k not in ("pools", "feeds")]
    for kind in ("pools", "feeds"):
        for entry in body.get(kind, ()):
            lines += ["", f"[[dex_ingest.{kind}]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in entry.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_flow(
    settings: FlowSettings,
    config: Web3SourceConfig,
    topic: Topic[Any] = t.DEX_PRICES,
    flow_id: str = "dex_ingest",
    stop: threading.Event | None = None,
) -> Dataflow:
    """Pools and feeds on chain -> ``dex.prices``; setting ``stop`` ends the flow."""
    flow = Dataflow(flow_id)
    io = TopicIO(flow, settings)
    prices = web3_prices_input("web3_prices", flow, config, stop)
    io.write(prices.oks, topic)
    io.dead_letters([prices.errs])
    return flow


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    if settings.config_path is None:
        raise ValueError(
            "the dex_ingest flow needs MAKERFLOW_CONFIG naming a TOML file with the node's "
            "rpc_url and the pools and feeds to read (makerflow chain --config-out writes one)"
        )
    return build_flow(settings, load_dex_config(settings.config_path))


# Built on first access, not at import: the flow cannot exist without its config, and
# importing build_flow (for an all-in-one flow) must not need one.
__getattr__ = lazy_flow(_flow_from_env)
