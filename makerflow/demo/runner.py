"""The embedded demo: paper trading on replayed real market data, end to end, in one process.

What runs:

* a local exchange (Binance's API, our matching engine) replaying two minutes of real Binance
  spot BTC/USDT tops and trades, which is the public flow that fills our resting quotes;
* a local chain (in-process EVM) with a Uniswap V3 BTC/USDC pool and a Chainlink BTC/USD feed
  that follow the same market;
* the all-in-one dataflow: the exchange's public book and trade streams (read by the
  unmodified ccxt pro client, as live) → ticks → index (CEX + DEX, checked against the oracle)
  → risk → quoting → execution through the unmodified ccxt client; our orders, fills and
  balances come back through the private stream into quoting, risk and reconciliation.

The recording is from 2024; the demo moves it to the present (one offset for everything) and
replays it in real time, so the exchange, the chain and the wall-clock staleness check all see
one consistent clock. Every stream is written to ``<out>/<name>.jsonl`` and a summary printed.

With ``faults="chaos"`` the exchange mixes in, at a steady seeded rate, the faults a live venue
produces (:meth:`makerflow.exchange.faults.FaultPlan.chaos`: answers lost after processing,
requests processed after the client gave up, 429/418 bursts with Retry-After, orders the venue
expires, private events duplicated, reordered and lost in stream gaps). Either way the run
ends by writing the exchange's ground truth and the pipeline's final view beside the streams
(:mod:`makerflow.demo.ground_truth`).
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from makerflow.chain.local import Demo, LocalChain, deploy_demo
from makerflow.demo.ground_truth import balance_totals, write_exchange_truth, write_pipeline_state
from makerflow.exchange.faults import FaultPlan
from makerflow.exchange.local import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange, ccxt_client
from makerflow.exchange.market_data import MarketEvent, PublicTrade, replay_file
from makerflow.flows.all_in_one import (
    PipelineConfig,
    PipelineInputs,
    PipelineOutputs,
    trading_pipeline,
)
from makerflow.operators.index import IndexConfig
from makerflow.operators.quoting_config import QuotingConfig, QuotingParams
from makerflow.operators.recon_logic import ReconConfig
from makerflow.operators.risk_limits import MarketConfig as RiskMarket
from makerflow.operators.risk_limits import RiskConfig
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig
from makerflow.sinks.jsonl import jsonl_output
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.ccxt_public import CcxtMarketsConfig, CcxtPublicSource
from makerflow.sources.clock import WallClock
from makerflow.sources.loopback import Loopback
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream
from makerflow.sources.web3_prices import Web3PriceSource

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data" / "binance_spot_btcusdt_20240808_2min.gz"


FAULT_MODES = ("none", "chaos")

CHAOS_CLIENT_TIMEOUT_MS = 2_000
"""The sink's request timeout under chaos: a late request lands a second after it."""


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    counts: dict[str, int]
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    """Faults the exchange injected, per kind."""


def first_time_ns(path: Path) -> int:
    """The receive time of the recording's first line."""
    with gzip.open(path, "rt") as f:
        return int(f.readline().split(" ", 1)[0])


def _shifted(
    events: Iterator[MarketEvent], offset_ms: int, until_ms: int | None = None
) -> Iterator[MarketEvent]:
    """The recording moved to the present; it ends at ``until_ms`` (shifted event time)."""
    for ev in events:
        shifted = dataclasses.replace(ev, time_ms=ev.time_ms + offset_ms)
        if until_ms is not None and shifted.time_ms > until_ms:
            return
        yield shifted


CHAOS_QUOTING = QuotingParams(
    warmup_s=3.0, levels=3, refresh_tolerance_bps=0.2, min_quote_lifetime_s=0.5
)
"""Under chaos the quoter works harder (three levels a side, re-quoting on small moves), so a
short run gives the faults many orders to strike."""


def demo_config(
    exchange_url: str, *, timeout_ms: int = 5_000, quoting: QuotingParams | None = None
) -> PipelineConfig:
    """The demo's settings: the quoter's default market (Binance BTC/USDT, priced off the BTC
    basket) on the local exchange; an index of Binance and the DEX."""
    return PipelineConfig(
        index=IndexConfig(min_venues=2, dex_max_age_s=30.0, max_age_s=10.0),
        # The demo replays two minutes: the volatility warms up on 10 s instead of 30 s.
        quoting=QuotingConfig(
            id_namespace="demo", defaults=quoting or QuotingParams(warmup_s=10.0)
        ),
        risk=RiskConfig(
            markets=(RiskMarket(venue="binance", symbol="BTC/USDT", index_basket="BTC"),)
        ),
        recon=ReconConfig(window_s=30.0, grace_s=3.0),
        exchange=ExchangeSinkConfig(
            url=exchange_url, venue="binance", rate_limit_ms=5.0, timeout_ms=timeout_ms
        ),
    )


class ChainFollower(threading.Thread):
    """Moves the local chain's BTC pool and feed to the replayed market every few seconds, so
    the DEX and the oracle track the CEX the way arbitrage keeps them close in reality."""

    def __init__(self, demo: Demo, trades: list[tuple[int, float]], start_ns: int) -> None:
        super().__init__(name="chain-follower", daemon=True)
        self.demo = demo
        self.trades = trades
        self.start_ns = start_ns
        self.stop_event = threading.Event()

    def price_at(self, t_ns: int) -> float:
        price = self.trades[0][1]
        for ts, p in self.trades:
            if ts > t_ns:
                break
            price = p
        return price

    def run(self) -> None:
        chain = self.demo.chain
        while not self.stop_event.wait(2.0):
            price = self.price_at(time.time_ns())
            try:
                chain.set_v3_price(self.demo.pools["uniswap_v3:BTC/USDC"], price * 1.0002)
                chain.set_feed_price(self.demo.feeds["BTC/USD"], price)
            except Exception:  # the demo goes on without chain moves rather than dying
                logger.exception("could not move the demo chain")


def recorded_trades(offset_ms: int) -> list[tuple[int, float]]:
    return [
        ((ev.time_ms + offset_ms) * 1_000_000, float(ev.price))
        for ev in replay_file(DATA)
        if isinstance(ev, PublicTrade)
    ]


def ccxt_public_config(exchange_url: str) -> CcxtMarketsConfig:
    """The live market-data source's settings for the local exchange's public streams."""
    client = ccxt_client(exchange_url, pro=True)
    options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}
    return CcxtMarketsConfig(
        markets=("binance:BTC/USDT",),
        exchange_config={"binance": {"urls": client.urls, "options": options}},
        depth=50,
    )


def build_demo_flow(
    exchange_url: str,
    rpc_config: Any,
    latch: RunLatch,
    out_dir: Path,
    *,
    timeout_ms: int = 5_000,
    quoting: QuotingParams | None = None,
) -> Dataflow:
    flow = Dataflow("demo")
    # Market data comes from the venue we trade on, as it would live: the exchange's public
    # websocket streams read by the unmodified ccxt pro client. A quoter fed from another copy
    # of the recording would see the book a moment late and cross it.
    public = ccxt_public_config(exchange_url)
    md = op.input("md", flow, bounded(CcxtPublicSource(public), latch, finite=False))
    book_split = op.branch("book", md, lambda e: isinstance(e, BookSnapshot | BookDelta))
    trades = op.filter("trades", book_split.falses, lambda e: isinstance(e, Trade))
    chain = op.input("chain", flow, bounded(Web3PriceSource(rpc_config), latch, finite=False))
    chain_split = op.branch("chain_ok", chain, lambda x: not isinstance(x, DeadLetter))
    priv = private_stream(
        "private",
        flow,
        PrivateStreamConfig(url=exchange_url, symbols=("BTC/USDT",), poll_interval_s=0.5),
        stop=latch,
    )
    clock = op.input("clock", flow, bounded(WallClock(timedelta(seconds=1)), latch, finite=False))
    out: PipelineOutputs = trading_pipeline(
        "pipeline",
        flow,
        PipelineInputs(
            book=book_split.trues,
            trades=trades,
            dex=chain_split.trues,
            orders=priv.orders,
            fills=priv.fills,
            balances=priv.balances,
            clock=clock,
        ),
        demo_config(exchange_url, timeout_ms=timeout_ms, quoting=quoting),
        credentials=Credentials(DEFAULT_API_KEY, DEFAULT_SECRET),
        feedback=Loopback(),
        stop=latch,
    )
    dead = op.merge("dead", out.dead_letters, chain_split.falses)
    streams: dict[str, Any] = {
        "ticks": out.ticks,
        "bars": out.bars,
        "quality": out.quality,
        "dex_prices": chain_split.trues,
        "index": out.index,
        "risk_states": out.risk_states,
        "alerts": out.alerts,
        "ladders": out.ladders,
        "intents": out.intents,
        "executions": out.executions,
        "order_events": priv.orders,
        "fills": priv.fills,
        "balances": priv.balances,
        "recon_reports": out.recon_reports,
        "dead_letters": dead,
    }
    for name, stream in streams.items():
        jsonl_output(f"out_{name}", stream, out_dir / f"{name}.jsonl")
    return flow


def chaos_plan(rate: float, seed: int) -> FaultPlan:
    """The demo's chaos: every fault kind at ``rate`` of the opportunities, tuned to the
    sink's timeout."""
    return FaultPlan.chaos(rate, seed, client_timeout_s=CHAOS_CLIENT_TIMEOUT_MS / 1000)


def run_demo(
    out_dir: Path,
    *,
    seconds: float = 120.0,
    grace_s: float = 5.0,
    faults: str = "none",
    chaos_rate: float = 0.05,
    chaos_seed: int = 0,
    settle_s: float | None = None,
) -> DemoResult:
    """Run the demo, write every stream, the exchange's ground truth and the pipeline's final
    view to ``out_dir``; return the line counts and the faults injected per kind.

    ``settle_s``: the public market stops this long before the run does, so nothing trades
    while the pipeline is no longer listening and the last late requests, held events and
    stream gaps play out before the views are compared (default: 6 s under chaos, else 0)."""
    if faults not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {faults!r}; choose one of {FAULT_MODES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Both the sink and the private stream read credentials the usual way (env); these are
    # the local exchange's own demo keys, not secrets.
    os.environ.setdefault("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    os.environ.setdefault("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    start_ns = time.time_ns()
    offset_ns = start_ns - first_time_ns(DATA)
    offset_ms = offset_ns // 1_000_000
    trades = recorded_trades(offset_ms)
    chaos = faults == "chaos"
    settle = settle_s if settle_s is not None else (6.0 if chaos else 0.0)
    until_ms = start_ns // 1_000_000 + int((seconds - settle) * 1000) if settle > 0 else None
    market = _shifted(replay_file(DATA), offset_ms, until_ms)
    chain = LocalChain()
    demo = deploy_demo(chain, btc_usd=trades[0][1])
    latch = RunLatch(grace_s=grace_s, max_runtime_s=seconds)
    plan = chaos_plan(chaos_rate, chaos_seed) if chaos else None
    timeout_ms = CHAOS_CLIENT_TIMEOUT_MS if chaos else 5_000
    with (
        LocalExchange(market=market, speed=1.0, faults=plan) as exchange,
        chain.serve() as rpc,
    ):
        balances_start = exchange.call(lambda s: balance_totals(s.engine.balances("main")))
        follower = ChainFollower(demo, trades, start_ns)
        follower.start()
        try:
            rpc_config = demo.source_config(rpc.url, poll_interval_s=0.5)
            flow = build_demo_flow(
                exchange.url,
                rpc_config,
                latch,
                out_dir,
                timeout_ms=timeout_ms,
                quoting=CHAOS_QUOTING if chaos else None,
            )
            logger.info(
                "demo running: exchange %s, chain %s, output %s, faults %s",
                exchange.url,
                rpc.url,
                out_dir,
                faults,
            )
            run_main(flow)
        finally:
            follower.stop_event.set()
            follower.join(timeout=10)
            # The venue's truth as the run left it, before the exchange goes away.
            exchange.call(lambda s: s.faults.clear())
            state = exchange.state()
            balances_end = exchange.call(lambda s: balance_totals(s.engine.balances("main")))
            orders, fills = exchange.call(_truth)
            write_exchange_truth(out_dir, orders, fills, balances_start, balances_end, state)
    write_pipeline_state(out_dir)
    counts = {}
    for path in sorted(out_dir.glob("*.jsonl")):
        with path.open("rb") as f:
            counts[path.stem] = sum(1 for _ in f)
    return DemoResult(out_dir=out_dir, counts=counts, faults=dict(state["faults_by_kind"]))


def _truth(server: Any) -> tuple[list[Any], list[Any]]:
    engine = server.engine
    orders = [
        (o, engine.markets[symbol])
        for symbol in sorted(engine.markets)
        for o in engine.all_orders("main", symbol)
    ]
    trades = [
        (t, engine.markets[symbol])
        for symbol in sorted(engine.markets)
        for t in engine.my_trades("main", symbol)
    ]
    return orders, trades
