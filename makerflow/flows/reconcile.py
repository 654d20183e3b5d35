"""The reconcile service: fills, balances and transfers -> recon.reports and alerts; with
``open_orders`` configured, also orders.events against the exchange's open orders.

Run it with ``python -m bytewax.run makerflow.flows.reconcile:flow`` (``-w N`` for N workers;
balances are keyed ``account:asset``). ``MAKERFLOW_CONFIG`` may name a TOML file holding a
:class:`ReconFlowConfig` (``[recon]`` window and tolerances, ``[open_orders]`` the exchange).
"""

from __future__ import annotations

import os
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, Stream

from makerflow.flows.common import FlowSettings, TopicIO
from makerflow.operators.recon_logic import ReconConfig
from makerflow.operators.reconcile import reconcile_op, reconcile_orders_op
from makerflow.schemas.config import Config, load_config
from makerflow.schemas.events import Alert
from makerflow.schemas.topics import (
    ALERTS,
    BALANCES,
    FILLS,
    ORDER_EVENTS,
    RECON_REPORTS,
    TRANSFERS,
)
from makerflow.sources.open_orders import OpenOrdersSource


class OpenOrdersConfig(Config, frozen=True, kw_only=True):
    """Where to list our open orders. Credentials come from the environment, never a file."""

    venue: str
    """The venue name our OrderEvents carry (``binance``, ``local``)."""
    account: str = "main"
    exchange: str = "binance"
    """The ccxt exchange id."""
    url: str | None = None
    """Base URL of a local exchange (``http://127.0.0.1:PORT``); ``None`` for the real one."""
    symbols: tuple[str, ...] = ()
    """Markets to list (some venues need one call per market); empty lists all."""
    interval_s: float = 30.0
    api_key_env: str = "MAKERFLOW_API_KEY"
    secret_env: str = "MAKERFLOW_API_SECRET"


class ReconFlowConfig(Config, frozen=True, kw_only=True):
    recon: ReconConfig = msgspec.field(default_factory=ReconConfig)
    open_orders: OpenOrdersConfig | None = None


class _ClientFactory:
    """Builds the ccxt async client on the source's own event loop."""

    def __init__(self, cfg: OpenOrdersConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> Any:
        key = os.environ.get(self.cfg.api_key_env, "")
        secret = os.environ.get(self.cfg.secret_env, "")
        if self.cfg.url:
            from makerflow.exchange.local import ccxt_client

            return ccxt_client(self.cfg.url, key, secret) if key else ccxt_client(self.cfg.url)
        import ccxt.async_support as ccxt_async

        return getattr(ccxt_async, self.cfg.exchange)({"apiKey": key, "secret": secret})


def build_flow(
    settings: FlowSettings | None = None, config: ReconFlowConfig | None = None
) -> Dataflow:
    """The reconcile dataflow reading and writing the topics of ``settings``."""
    settings = settings or FlowSettings.from_env()
    if config is None:
        config = (
            load_config(settings.config_path, ReconFlowConfig)
            if settings.config_path
            else ReconFlowConfig()
        )
    flow = Dataflow("reconcile")
    io = TopicIO(flow, settings)
    out = reconcile_op(
        "reconcile", io.read(FILLS), io.read(BALANCES), io.read(TRANSFERS), config.recon
    )
    io.write(out.reports, RECON_REPORTS)
    alerts: list[Stream[Alert]] = [out.alerts]
    oo = config.open_orders
    if oo is not None:
        listings = op.input(
            "open_orders",
            flow,
            OpenOrdersSource(
                _ClientFactory(oo),
                venue=oo.venue,
                account=oo.account,
                symbols=oo.symbols or None,
                interval_s=oo.interval_s,
            ),
        )
        orders = reconcile_orders_op(
            "reconcile_orders", io.read(ORDER_EVENTS), listings, config.recon
        )
        alerts.append(orders.alerts)
    io.write(op.merge("alerts", *alerts) if len(alerts) > 1 else alerts[0], ALERTS)
    io.dead_letters([out.dead_letters])
    return flow


flow = build_flow()
