"""The reconcile service: fills, balances and transfers -> recon.reports and alerts; with
``open_orders = true``, also orders.events against the exchange's open orders.

Run it with ``python -m bytewax.run makerflow.flows.reconcile:flow`` (``-w N`` for N workers;
balances are keyed ``account:asset``). ``MAKERFLOW_CONFIG`` may name a TOML file holding a
:class:`ReconFlowConfig` (``[recon]``: windows and tolerances; ``[exchange]``: whose open
orders to list). Credentials: ``MAKERFLOW_EXCHANGE_API_KEY`` / ``MAKERFLOW_EXCHANGE_SECRET``
(or the secret files ``[exchange]`` names), as for the execution service.

Ordering: tailing, a balance's fills, transfers and snapshots are taken in arrival order;
with ``MAKERFLOW_TAIL=0`` (a replay) in event time (:func:`merge_scope` says what the
merge knows from the configuration), so a rerun writes the same reports.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, Stream

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.recon_config import ReconConfig
from makerflow.operators.reconcile import reconcile_op, reconcile_orders_op
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.events import Alert
from makerflow.schemas.scopes import symbol_assets
from makerflow.schemas.topics import (
    ALERTS,
    BALANCES,
    FILLS,
    ORDER_EVENTS,
    RECON_REPORTS,
    TRANSFERS,
)
from makerflow.sources.open_orders import OpenOrdersSource
from makerflow.sources.private_stream import PrivateStreamConfig, default_client_factory


class ReconFlowConfig(Config, frozen=True, kw_only=True):
    recon: ReconConfig = msgspec.field(default_factory=ReconConfig)
    open_orders: bool = False
    """Also compare orders.events with the exchange's open orders (``fetch_open_orders``)."""
    exchange: PrivateStreamConfig = msgspec.field(default_factory=PrivateStreamConfig)
    """Whose open orders to list: venue, account, markets, URL and credentials, as the
    execution service's ``[private]`` section says them."""
    open_orders_interval_s: float = 30.0
    open_orders_polls: int | None = None
    """Stop after this many listings (replays); ``None`` lists for as long as the flow runs."""


class _ClientFactory:
    """Builds the ccxt async client where the poller runs (its worker, its event loop), so
    missing credentials are reported there, with the variable to set."""

    def __init__(self, cfg: PrivateStreamConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> Any:
        return default_client_factory(self.cfg)(False)


def config_from_env(settings: FlowSettings) -> ReconFlowConfig:
    """The config file named by ``MAKERFLOW_CONFIG`` (defaults otherwise);
    ``MAKERFLOW_EXCHANGE_URL`` points the open-order listing at a local exchange."""
    config = load_section(settings.config_path, "reconcile", ReconFlowConfig)
    url = os.environ.get("MAKERFLOW_EXCHANGE_URL")
    if url:
        config = msgspec.structs.replace(
            config, exchange=msgspec.structs.replace(config.exchange, url=url)
        )
    return config


def merge_scope(config: ReconFlowConfig) -> tuple[list[str], list[str]]:
    """What a replay's event-time merge knows from the configuration: the markets whose
    fills it reconciles (``venue:symbol``) and the balances (``account:asset``) the inputs'
    end markers go to: the account's assets of those markets and of
    ``[reconcile.recon] assets``."""
    ex = config.exchange
    markets = [f"{ex.venue}:{s}" for s in ex.symbols]
    assets = set(config.recon.assets)
    for s in ex.symbols:
        with contextlib.suppress(ValueError):
            assets.update(symbol_assets(s))
    return markets, [f"{ex.account}:{a}" for a in sorted(assets)]


def build_flow(
    settings: FlowSettings | None = None, config: ReconFlowConfig | None = None
) -> Dataflow:
    """The reconcile dataflow reading and writing the topics of ``settings``."""
    settings = settings or FlowSettings.from_env()
    if config is None:
        config = config_from_env(settings)
    flow = Dataflow("reconcile")
    io = TopicIO(flow, settings)
    bounded = not settings.tail
    markets, keys = merge_scope(config)
    out = reconcile_op(
        "reconcile",
        io.read(FILLS, end_markers=bounded),
        io.read(BALANCES, end_markers=bounded),
        io.read(TRANSFERS, end_markers=bounded),
        config.recon,
        bounded=bounded,
        markets=markets,
        keys=keys,
    )
    io.write(out.reports, RECON_REPORTS)
    alerts: list[Stream[Alert]] = [out.alerts]
    if config.open_orders:
        ex = config.exchange
        listings = op.input(
            "open_orders",
            flow,
            OpenOrdersSource(
                _ClientFactory(ex),
                venue=ex.venue,
                account=ex.account,
                symbols=ex.symbols or None,
                interval_s=config.open_orders_interval_s,
                polls=config.open_orders_polls,
            ),
        )
        orders = reconcile_orders_op(
            "reconcile_orders", io.read(ORDER_EVENTS), listings, config.recon
        )
        alerts.append(orders.alerts)
    io.write(op.merge("alerts", *alerts) if len(alerts) > 1 else alerts[0], ALERTS)
    io.dead_letters([out.dead_letters])
    return flow


__getattr__ = lazy_flow(build_flow)
