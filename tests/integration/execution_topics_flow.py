"""The execution service's flow on topics of one test (``orders.intents.<suffix>`` ...), for
tests that run it under ``python -m bytewax.run`` with recovery on the shared broker:
``python -m bytewax.run "tests.integration.execution_topics_flow:flow('t7')" -r DIR ...``.

Everything else is the service's own: settings and ``[execution]`` from the environment, as
``makerflow run execution`` builds it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET
from makerflow.flows.common import FlowSettings, configure_service_logging
from makerflow.flows.execution import ExecutionTopics, build_flow, config_from_env
from makerflow.schemas import topics as reg
from makerflow.schemas.events import OrderIntent
from makerflow.schemas.topics import Topic

REPO = Path(__file__).resolve().parents[2]

FIELDS = {
    "intents": reg.ORDER_INTENTS,
    "order_events": reg.ORDER_EVENTS,
    "fills": reg.FILLS,
    "balances": reg.BALANCES,
    "alerts": reg.ALERTS,
    "risk_states": reg.RISK_STATE,
}


def topics_for(suffix: str) -> ExecutionTopics:
    return ExecutionTopics(
        **{f: Topic(f"{t.name}.{suffix}", t.key, t.value_type) for f, t in FIELDS.items()}
    )


def flow(suffix: str) -> Dataflow:
    configure_service_logging()
    settings = FlowSettings.from_env()
    return build_flow(settings, config_from_env(settings), topics_for(suffix), flow_id="execution")


def service_env(bootstrap: str, config: Path) -> dict[str, str]:
    """The environment to run the service in: this process's without its ``MAKERFLOW_``
    settings, on the test's broker and configuration, with the local exchange's keys and
    no fixed metrics port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": bootstrap,
        "MAKERFLOW_CONFIG": str(config),
        "MAKERFLOW_METRICS_PORT": "0",
        "MAKERFLOW_EXCHANGE_API_KEY": DEFAULT_API_KEY,
        "MAKERFLOW_EXCHANGE_SECRET": DEFAULT_SECRET,
    }


def intent(cid: str, action: str = "place", **kw: Any) -> OrderIntent:
    """An intent for the test market, stamped now (the service judges its age)."""
    return OrderIntent(
        ts=time.time_ns(),
        venue="binance",
        symbol="BTC/USDT",
        action=action,  # type: ignore[arg-type]
        client_order_id=cid,
        **kw,
    )


def rest(cid: str) -> OrderIntent:
    """A buy resting well below the recorded market."""
    return intent(cid, side="buy", price=61000.0, qty=0.001, reference=61837.0)
