"""``makerflow demo --services``: the demo's run as separate services joined by Kafka.

The demo process keeps what stands in for the outside world: the embedded Kafka-protocol
broker (tansu), the local exchange, the local chain that follows the market, and the public
market data (the exchange's streams read by ccxt pro, and the reference futures' recordings)
published to ``md.book`` / ``md.trades``. Every service of the pipeline is started with the
Bytewax runner in its own process (``python -m bytewax.run makerflow.flows.<svc>:flow``), with
one TOML file (one table per service, the same settings as the one-process demo), its own
``/metrics`` port and the control key. At the end every process is stopped, the topics are
read back into ``<out>/<stream>.jsonl`` and summarized as the one-process demo is.

The parts: the configuration file (:mod:`~makerflow.demo.services_config`), the processes
(:mod:`~makerflow.demo.service_processes`), Prometheus (:mod:`~makerflow.demo.local_prometheus`)
and the market on Kafka (:mod:`~makerflow.demo.market_publisher`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytewax.testing import run_main

from makerflow.broker import Broker, free_port
from makerflow.chain.local import LocalChain, deploy_demo
from makerflow.demo.ground_truth import balance_totals, write_exchange_truth, write_pipeline_state
from makerflow.demo.local_prometheus import Prometheus, start_prometheus
from makerflow.demo.market_publisher import market_flow
from makerflow.demo.progress import Progress
from makerflow.demo.runner import (
    DATA,
    DEMO_BALANCES,
    DEMO_MARKET,
    ChainFollower,
    _shifted,
    _truth,
    btc_chain_config,
    recorded_trades,
)
from makerflow.demo.service_processes import (
    Service,
    start_services,
    stop_services,
    wait_for_metrics,
)
from makerflow.demo.services_config import services_config, to_toml
from makerflow.demo.venues import Crash, crashed, first_time_ns
from makerflow.exchange.local import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.exchange.market_data import MarketEvent, replay_file
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.schemas import topics as t
from makerflow.sources.bounded import RunLatch

# The parts are read through this module too (the demo command, the tests).
__all__ = [
    "SERVICES",
    "STREAMS",
    "ServicesResult",
    "market_flow",
    "read_back",
    "run_services_demo",
    "services_config",
    "to_toml",
]

logger = logging.getLogger(__name__)

SERVICES = ("ticks", "index", "dex_ingest", "risk", "quoter", "execution", "reconcile")

STREAMS: Mapping[str, t.Topic[Any]] = {
    "ticks": t.TICKS,
    "index": t.INDEX,
    "dex_prices": t.DEX_PRICES,
    "risk_states": t.RISK_STATE,
    "alerts": t.ALERTS,
    "ladders": t.QUOTES,
    "intents": t.ORDER_INTENTS,
    "order_events": t.ORDER_EVENTS,
    "fills": t.FILLS,
    "balances": t.BALANCES,
    "recon_reports": t.RECON_REPORTS,
    "dead_letters": t.DEAD_LETTERS,
}
"""The topics read back at the end, by the stream name the summary knows them by."""


@dataclass
class ServicesResult:
    services: list[Service] = field(default_factory=list)
    prometheus_alerts: list[dict[str, str]] | None = None
    """The alerts Prometheus saw firing (None: it did not run)."""


def read_back(brokers: list[str], out_dir: Path) -> dict[str, int]:
    """Every stream's topic into ``<out>/<stream>.jsonl``; the line counts."""
    counts = {}
    for name, topic in STREAMS.items():
        msgs = read_topic(brokers, topic.name, idle=0.5, timeout=30.0)
        with (out_dir / f"{name}.jsonl").open("wb") as f:
            for m in msgs:
                f.write((m.value() or b"").rstrip(b"\n") + b"\n")
        counts[name] = len(msgs)
    return counts


DEMO_FETCH_WAIT_MS = "100"
"""Every service's consumer fetch wait in the services demo (see ``run_services_demo``)."""


def services_env(bootstrap: str, config_path: Path, exchange_url: str) -> dict[str, str]:
    """The environment every service process of the services demo runs with."""
    return {
        # Seven services share the embedded broker, which answers a waiting fetch only
        # at the end of its wait: at the shipped 5 ms on the path to an order it took
        # half a core (20 s of CPU in 41 s), enough on two cores to put the pipeline
        # seconds behind the market and expire the quoter's orders; 100 ms on every
        # consumer costs it a fifth of a core (9 s), and the demo's orders no latency
        # that matters (an explicit MAKERFLOW_KAFKA_FETCH_WAIT_MS wins).
        "MAKERFLOW_KAFKA_FETCH_WAIT_MS": DEMO_FETCH_WAIT_MS,
        **os.environ,
        "MAKERFLOW_BROKERS": bootstrap,
        "MAKERFLOW_CONFIG": str(config_path),
        "MAKERFLOW_EXCHANGE_URL": exchange_url,
        "MAKERFLOW_CONTROL_KEY": secrets.token_hex(32),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }


def run_services_demo(
    out_dir: Path,
    *,
    seconds: float = 120.0,
    grace_s: float = 5.0,
    crash: Crash | None = None,
    prometheus: bool = False,
    on_stage: Any = None,
    progress: Progress | None = None,
) -> ServicesResult:
    """The demo as services (see the module doc); writes what :func:`run_demo` writes."""
    from makerflow.demo.runner import ReferenceReplay

    say = on_stage or (lambda msg: logger.info("%s", msg))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    os.environ.setdefault("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    result = ServicesResult()
    chain = LocalChain()
    demo = deploy_demo(chain, btc_usd=recorded_trades(0)[0][1])
    exchange_port = free_port()
    exchange_url = f"http://127.0.0.1:{exchange_port}"
    with Broker() as broker, chain.serve() as rpc:
        brokers = [broker.bootstrap]
        ensure_topics(brokers, list(t.TOPICS))
        rpc_config = btc_chain_config(demo.source_config(rpc.url, poll_interval_s=0.5))
        config_path = out_dir / "services.toml"
        config_path.write_text(to_toml(services_config(exchange_url, rpc_config)))
        env = services_env(broker.bootstrap, config_path, exchange_url)
        say(f"starting {len(SERVICES)} services on the broker at {broker.bootstrap}")
        result.services = start_services(SERVICES, env, out_dir / "logs")
        prom: Prometheus | None = None
        try:
            wait_for_metrics(result.services)
            say(
                "services up, /metrics on: "
                + ", ".join(f"{s.name} :{s.port}" for s in result.services)
            )
            if prometheus:
                prom = start_prometheus(result.services, out_dir / "prometheus")
                say(f"prometheus at {prom.url} scrapes them with docker/prometheus/rules")
            start_ns = time.time_ns()
            offset_ns = start_ns - first_time_ns(DATA)
            offset_ms = offset_ns // 1_000_000
            market: Iterator[MarketEvent] = _shifted(replay_file(DATA), offset_ms)
            if crash is not None:
                market = crashed(market, crash, first_time_ns(DATA) // 1_000_000 + offset_ms)
            ref = ReferenceReplay(
                offset_ns=offset_ns, start_ns=first_time_ns(DATA) + offset_ns, crash=crash
            )
            with LocalExchange(
                markets=(DEMO_MARKET,),
                balances=DEMO_BALANCES,
                market=market,
                speed=1.0,
                port=exchange_port,
            ) as exchange:
                balances_start = exchange.call(lambda s: balance_totals(s.engine.balances("main")))
                follower = ChainFollower(demo, recorded_trades(offset_ms, crash), start_ns)
                follower.start()
                try:
                    latch = RunLatch(grace_s=grace_s, max_runtime_s=seconds)
                    say(f"market running for {seconds:g} s")
                    if progress is not None:
                        progress.start()
                    run_main(market_flow(exchange.url, tuple(brokers), latch, ref, progress))
                    time.sleep(grace_s)  # the last fills and reports reach the topics
                finally:
                    follower.stop_event.set()
                    follower.join(timeout=10)
                    state = exchange.state()
                    balances_end = exchange.call(
                        lambda s: balance_totals(s.engine.balances("main"))
                    )
                    orders, fills = exchange.call(_truth)
                    write_exchange_truth(
                        out_dir, orders, fills, balances_start, balances_end, state
                    )
            if prom is not None:
                time.sleep(3)  # two evaluations of the rules over the last scrapes
                result.prometheus_alerts = prom.fired()
        finally:
            if prom is not None:
                prom.stop()
            say("stopping the services")
            stop_services(result.services)
        read_back(brokers, out_dir)
    write_pipeline_state(out_dir)
    (out_dir / "services.json").write_text(
        json.dumps(
            {
                "services": [
                    {
                        "name": s.name,
                        "metrics_port": s.port,
                        "served_metrics": s.metrics_ok,
                        "exit_code": s.exit_code,
                        "log": str(s.log),
                    }
                    for s in result.services
                ],
                "prometheus_alerts": result.prometheus_alerts,
            },
            indent=2,
        )
        + "\n"
    )
    return result
