"""``makerflow demo --services``: the demo's run as separate services joined by Kafka.

The demo process keeps what stands in for the outside world: the embedded Kafka-protocol
broker (tansu), the local exchange, the local chain that follows the market, and the public
market data (the exchange's streams read by ccxt pro, and the reference futures' recordings)
published to ``md.book`` / ``md.trades``. Every service of the pipeline is started with the
Bytewax runner in its own process (``python -m bytewax.run makerflow.flows.<svc>:flow``), with
one TOML file (one table per service, the same settings as the one-process demo), its own
``/metrics`` port and the control key. At the end every process is stopped, the topics are
read back into ``<out>/<stream>.jsonl`` and summarized as the one-process demo is.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING

from makerflow.broker import Broker, free_port
from makerflow.chain.local import LocalChain, deploy_demo
from makerflow.demo.ground_truth import balance_totals, write_exchange_truth, write_pipeline_state
from makerflow.demo.progress import Progress
from makerflow.demo.reference_source import AlignedRecordedSource
from makerflow.demo.runner import (
    DATA,
    DEMO_BALANCES,
    DEMO_MARKET,
    ChainFollower,
    _shifted,
    _truth,
    btc_chain_config,
    ccxt_public_config,
    demo_config,
    recorded_trades,
)
from makerflow.demo.venues import (
    REFERENCE,
    Crash,
    ReferenceBookFactory,
    crashed,
    first_time_ns,
    move_reference,
)
from makerflow.exchange.local import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.exchange.market_data import MarketEvent, replay_file
from makerflow.flows.common import FlowSettings, TopicIO
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.schemas import topics as t
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.ccxt_public import CcxtPublicSource
from makerflow.sources.kafka import LagReportingKafkaSource, decode_events

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


# --- the services' configuration file ----------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return msgspec.json.encode(v).decode()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else msgspec.json.encode(k).decode()


def _drop_none(v: Any) -> Any:
    """TOML has no null: a field left out takes its default (every None here is one)."""
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_drop_none(x) for x in v]
    return v


def to_toml(sections: Mapping[str, Any]) -> str:
    """``{section: config}`` as a TOML document, one table per section (a pure function;
    nested values as inline tables)."""
    lines: list[str] = []
    for name, config in sections.items():
        table = _drop_none(msgspec.to_builtins(config))
        lines.append(f"[{name}]")
        lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)


def services_config(exchange_url: str, rpc_config: Any) -> dict[str, Any]:
    """Every service's table: the one-process demo's settings, split by service."""
    from makerflow.flows.execution import ExecutionConfig
    from makerflow.flows.reconcile import ReconFlowConfig
    from makerflow.sources.private_stream import PrivateStreamConfig

    cfg = demo_config(exchange_url)
    private = PrivateStreamConfig(url=exchange_url, symbols=("BTC/USDT",), poll_interval_s=0.5)
    return {
        "ticks": cfg.ticks,
        "index": cfg.index,
        "dex_ingest": rpc_config,
        "risk": cfg.risk,
        "quoting": cfg.quoting,
        "execution": ExecutionConfig(
            sink=cfg.exchange, private=private, gate=cfg.gate, flatten=cfg.flatten
        ),
        "reconcile": ReconFlowConfig(recon=cfg.recon),
    }


# --- the processes ------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_ok: bool = False
    exit_code: int | None = None


@dataclass
class ServicesResult:
    services: list[Service] = field(default_factory=list)
    prometheus_alerts: list[dict[str, str]] | None = None
    """The alerts Prometheus saw firing (None: it did not run)."""


def _metrics_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return r.status == 200 and b"# HELP" in r.read()
    except OSError:
        return False


def start_services(env: Mapping[str, str], logs: Path) -> list[Service]:
    logs.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SERVICES:
        port = free_port()
        log = logs / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"makerflow.flows.{name}:flow"],
            env={**env, "MAKERFLOW_METRICS_PORT": str(port)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.append(Service(name, port, proc, log))
    return out


def wait_for_metrics(services: list[Service], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for s in services:
            if not s.metrics_ok and s.proc.poll() is None:
                s.metrics_ok = _metrics_up(s.port)
        dead = [s for s in services if s.proc.poll() is not None]
        if dead:
            raise RuntimeError(
                "service(s) exited at start: " + ", ".join(f"{s.name} (see {s.log})" for s in dead)
            )
        if all(s.metrics_ok for s in services):
            return
        time.sleep(0.5)
    late = [s.name for s in services if not s.metrics_ok]
    raise RuntimeError(f"no /metrics from {late} after {timeout_s:g} s")


def stop_services(services: list[Service], timeout_s: float = 8.0) -> None:
    """SIGINT (the runner's Ctrl-C) to each process, SIGKILL to what is left after
    ``timeout_s``; every process is waited for."""
    for s in services:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for s in services:
        try:
            s.exit_code = s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.exit_code = s.proc.wait(timeout=10)


# --- Prometheus, when installed ------------------------------------------------------------

RULES = Path(__file__).resolve().parents[2] / "docker" / "prometheus" / "rules"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def prometheus_config(services: list[Service], rules: Path) -> str:
    """Scrape every service each second (one job per service, as docker/prometheus does)
    and evaluate the project's alert rules."""
    jobs = "".join(
        f"  - job_name: makerflow-{s.name}\n    static_configs:\n"
        f'      - targets: ["127.0.0.1:{s.port}"]\n        labels: {{service: {s.name}}}\n'
        for s in services
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rules}/*.yml\nscrape_configs:\n{jobs}"
    )


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str

    def fired(self, window_s: int = 600) -> list[dict[str, str]]:
        """Every alert that was firing at some moment of the last ``window_s`` seconds."""
        query = urllib.parse.quote(f'max_over_time(ALERTS{{alertstate="firing"}}[{window_s}s])')
        with urllib.request.urlopen(f"{self.url}/api/v1/query?query={query}", timeout=5) as r:
            body = json.loads(r.read())
        return sorted(
            (dict(x["metric"]) for x in body["data"]["result"]),
            key=lambda m: (m.get("alertname", ""), sorted(m.items())),
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_prometheus(services: list[Service], work: Path) -> Prometheus:
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("prometheus is not installed (make system-deps installs it)")
    work.mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    config.write_text(prometheus_config(services, RULES))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(work / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return prom
        except OSError:
            time.sleep(0.3)
    prom.stop()
    raise RuntimeError(f"prometheus did not start (see {work / 'prometheus.log'})")


# --- the market, published ----------------------------------------------------------------


def _follow(
    flow: Dataflow,
    brokers: tuple[str, ...],
    latch: RunLatch,
    topic: t.Topic[Any],
    on_event: Any,
) -> None:
    """Feed ``on_event`` with what the services publish on ``topic`` (until the run ends)."""
    source = LagReportingKafkaSource(
        list(brokers),
        [topic.name],
        tail=True,
        starting_offset=OFFSET_BEGINNING,
        raise_on_errors=False,
    )
    sid = f"follow_{topic.name.replace('.', '_')}"
    raw = op.input(sid, flow, bounded(source, latch, finite=False))
    events = decode_events(f"{sid}_decode", raw, topic.codec, step=sid)
    op.inspect(f"{sid}_progress", events.oks, lambda _s, e: on_event(e))


def market_flow(
    exchange_url: str,
    brokers: tuple[str, ...],
    latch: RunLatch,
    ref: Any,
    progress: Progress | None = None,
) -> Dataflow:
    """The public market data on Kafka: the exchange's streams (ccxt pro) and the reference
    futures' recordings to ``md.book`` and ``md.trades``; with ``progress``, it also follows
    the services' ticks, quotes, fills and risk states for the progress line."""
    flow = Dataflow("demo_market")
    io = TopicIO(flow, FlowSettings(brokers=brokers))
    md = op.input(
        "md", flow, bounded(CcxtPublicSource(ccxt_public_config(exchange_url)), latch, finite=False)
    )
    split = op.branch("book", md, lambda e: isinstance(e, BookSnapshot | BookDelta))
    trades = op.filter("trades", split.falses, lambda e: isinstance(e, Trade))
    recorded = op.input(
        "reference",
        flow,
        bounded(
            AlignedRecordedSource([str(p) for p in REFERENCE], ref.offset_ns), latch, finite=False
        ),
    )
    ok = op.filter("reference_ok", recorded, lambda e: not isinstance(e, DeadLetter))
    keyed = op.key_on("reference_key", ok, lambda e: e.key)
    factory = ReferenceBookFactory(ref.offset_ns, ref.crash, ref.start_ns)
    moved = op.key_rm(
        "reference_unkey",
        op.stateful_map("reference_now", keyed, lambda b, e: move_reference(b, e, factory=factory)),
    )
    ref_books = op.filter(
        "reference_books", moved, lambda e: isinstance(e, BookSnapshot | BookDelta)
    )
    io.write(op.merge("books", split.trues, ref_books), t.MD_BOOK)
    io.write(trades, t.MD_TRADES)
    if progress is not None:
        _follow(flow, brokers, latch, t.TICKS, progress.on_tick)
        _follow(flow, brokers, latch, t.QUOTES, progress.on_ladder)
        _follow(flow, brokers, latch, t.FILLS, progress.on_fill)
        _follow(flow, brokers, latch, t.RISK_STATE, progress.on_risk)
    return flow


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
        env = {
            **os.environ,
            "MAKERFLOW_BROKERS": broker.bootstrap,
            "MAKERFLOW_CONFIG": str(config_path),
            "MAKERFLOW_EXCHANGE_URL": exchange_url,
            "MAKERFLOW_CONTROL_KEY": secrets.token_hex(32),
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
            ),
        }
        say(f"starting {len(SERVICES)} services on the broker at {broker.bootstrap}")
        result.services = start_services(env, out_dir / "logs")
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
