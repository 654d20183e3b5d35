"""The execution service's flow on topics of one test (``orders.intents.<suffix>`` ...), for
tests that run it under ``python -m bytewax.run`` with recovery on the shared broker:
``python -m bytewax.run "tests.integration.execution_topics_flow:flow('t7')" -r DIR ...``.

Everything else is the service's own: settings and ``[execution]`` from the environment, as
``makerflow run execution`` builds it."""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, configure_service_logging
from makerflow.flows.execution import ExecutionTopics, build_flow, config_from_env
from makerflow.schemas import topics as reg
from makerflow.schemas.topics import Topic

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
