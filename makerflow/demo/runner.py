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
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from makerflow.chain.local import Demo, LocalChain, deploy_demo
from makerflow.demo.ground_truth import balance_totals, write_exchange_truth, write_pipeline_state
from makerflow.demo.progress import Progress
from makerflow.demo.reference_source import AlignedRecordedSource
from makerflow.demo.venues import (
    REFERENCE,
    SPOT,
    Crash,
    ReferenceBookFactory,
    crashed,
    first_time_ns,
    move_reference,
)
from makerflow.exchange.faults import FaultPlan
from makerflow.exchange.local import (
    BTCUSDT,
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    LocalExchange,
    ccxt_client,
)
from makerflow.exchange.market_data import MarketEvent, PublicTrade, replay_file
from makerflow.flows.all_in_one import (
    PipelineConfig,
    PipelineInputs,
    PipelineOutputs,
    trading_pipeline,
)
from makerflow.operators.index_config import Basket, BasketAsset, IndexConfig
from makerflow.operators.quoting_config import QuotingConfig, QuotingParams
from makerflow.operators.recon_logic import ReconConfig
from makerflow.operators.risk_limits import MarketConfig as RiskMarket
from makerflow.operators.risk_limits import MarketLimits as RiskMarketLimits
from makerflow.operators.risk_limits import RiskConfig
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig
from makerflow.sinks.jsonl import jsonl_output
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.ccxt_public import CcxtMarketsConfig, CcxtPublicSource
from makerflow.sources.clock import WallClock
from makerflow.sources.loopback import Loopback
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream
from makerflow.sources.web3_prices import Web3PriceSource, Web3SourceConfig

logger = logging.getLogger(__name__)

DATA = SPOT


FAULT_MODES = ("none", "chaos")

CHAOS_CLIENT_TIMEOUT_MS = 2_000
"""The sink's request timeout under chaos: a late request lands a second after it."""


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    counts: dict[str, int]
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    """Faults the exchange injected, per kind."""


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


DEMO_MARKET = dataclasses.replace(BTCUSDT, maker_fee=Decimal("0.0001"))
"""The demo account's fee tier on BTC/USDT: 1 bp maker (a market maker's tier, where the
exchange's default is the retail 10 bps); taker fees stay 10 bps. The quoter prices it in."""

DEMO_BALANCES = {"main": {"USDT": 100_000, "BTC": 2}}
"""The demo account: 100 000 USDT and 2 BTC (no ETH: the demo trades BTC only)."""

MAKER_FEE_BPS = float(DEMO_MARKET.maker_fee * 10_000)

BTC_ONLY = (
    Basket(
        name="BTC",
        quote="USDT",
        quote_aliases=("USDC", "USD"),
        assets=(BasketAsset(asset="BTC", weight=1.0),),
    ),
)
"""The demo's one basket: every venue in it has real recorded data behind it (the demo has
no ETH market to replay, so it prices no ETH)."""


def demo_index() -> IndexConfig:
    """BTC from Binance spot (traded), USDT-M and COIN-M (recorded) and the chain's pool:
    four venues, so the median and the outlier rule have a majority to judge by. The futures
    trade at a small basis to spot, well inside the outlier floor."""
    return IndexConfig(
        baskets=BTC_ONLY,
        min_venues=2,
        dex_max_age_s=30.0,
        max_age_s=10.0,
        include_derivatives=True,
    )


def demo_config(
    exchange_url: str, *, timeout_ms: int = 5_000, quoting: QuotingParams | None = None
) -> PipelineConfig:
    """The demo's settings: the quoter's default market (Binance BTC/USDT, priced off the BTC
    basket) on the local exchange at the demo's fee tier; the index of :func:`demo_index`."""
    params = quoting or QuotingParams(warmup_s=10.0)
    return PipelineConfig(
        index=demo_index(),
        # The demo replays two minutes: the volatility warms up on 10 s instead of 30 s.
        quoting=QuotingConfig(
            id_namespace="demo",
            defaults=msgspec.structs.replace(params, maker_fee_bps=MAKER_FEE_BPS),
        ),
        risk=RiskConfig(
            markets=(
                RiskMarket(
                    venue="binance",
                    symbol="BTC/USDT",
                    index_basket="BTC",
                    # Staleness on, as live; the local replay paces itself event by event
                    # and falls seconds behind the wall clock on a loaded machine, so the
                    # demo pauses quoting only when its data is 10 s old.
                    limits=RiskMarketLimits(pause_data_age_ms=10_000),
                ),
            ),
            # The futures are the index's reference venues, not traded: risk neither halts
            # nor pauses them (a halt would send their cancel-all to a venue we do not use).
            # (Finite bounds no market reaches rather than None: TOML, the services' config, has
            # no null.)
            default_market_limits=RiskMarketLimits(
                max_move_bps=1_000_000.0, pause_data_age_ms=86_400_000
            ),
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


def recorded_trades(offset_ms: int, crash: Crash | None = None) -> list[tuple[int, float]]:
    events: Iterator[MarketEvent] = _shifted(replay_file(DATA), offset_ms)
    if crash is not None:
        events = crashed(events, crash, first_time_ns(DATA) // 1_000_000 + offset_ms)
    return [
        (ev.time_ms * 1_000_000, float(ev.price)) for ev in events if isinstance(ev, PublicTrade)
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


def btc_chain_config(config: Web3SourceConfig) -> Web3SourceConfig:
    """The chain's BTC pool and feed only: they follow the replayed market; the chain's ETH
    pools and feed have no market behind them in the demo."""
    return msgspec.structs.replace(
        config,
        pools=tuple(p for p in config.pools if p.base == "BTC"),
        feeds=tuple(f for f in config.feeds if f.base == "BTC"),
    )


@dataclass(frozen=True)
class ReferenceReplay:
    """The recorded reference venues, moved to the present (and crashed) like the market."""

    offset_ns: int
    start_ns: int
    """The traded recording's first moment, shifted: the crash is timed from it."""
    crash: Crash | None = None


def build_demo_flow(
    exchange_url: str,
    rpc_config: Any,
    latch: RunLatch,
    out_dir: Path,
    *,
    timeout_ms: int = 5_000,
    quoting: QuotingParams | None = None,
    reference: ReferenceReplay | None = None,
    progress: Progress | None = None,
) -> Dataflow:
    flow = Dataflow("demo")
    # Market data comes from the venue we trade on, as it would live: the exchange's public
    # websocket streams read by the unmodified ccxt pro client. A quoter fed from another copy
    # of the recording would see the book a moment late and cross it.
    public = ccxt_public_config(exchange_url)
    md = op.input("md", flow, bounded(CcxtPublicSource(public), latch, finite=False))
    # One source partition per market delivers its book updates and trades in the order the
    # venue sent them: kept as one stream, they need no event-time merge (and pay no wait).
    market_data = op.filter(
        "market_data", md, lambda e: isinstance(e, BookSnapshot | BookDelta | Trade)
    )
    if reference is not None:
        ref = reference
        recorded = op.input(
            "reference",
            flow,
            bounded(
                AlignedRecordedSource([str(p) for p in REFERENCE], ref.offset_ns),
                latch,
                finite=False,
            ),
        )
        ok = op.filter("reference_ok", recorded, lambda e: not isinstance(e, DeadLetter))
        keyed = op.key_on("reference_key", ok, lambda e: e.key)
        factory = ReferenceBookFactory(ref.offset_ns, ref.crash, ref.start_ns)
        moved = op.key_rm(
            "reference_unkey",
            op.stateful_map(
                "reference_now", keyed, functools.partial(move_reference, factory=factory)
            ),
        )
        ref_books = op.filter(
            "reference_books", moved, lambda e: isinstance(e, BookSnapshot | BookDelta)
        )
        market_data = op.merge("books", market_data, ref_books)
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
            book=market_data,
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
    assert out.fills is not None
    fills = out.fills  # each trade once: the private stream's and the sweep's
    if progress is not None:
        p = progress
        op.inspect("progress_ticks", out.ticks, lambda _s, t: p.on_tick(t))
        op.inspect("progress_ladders", out.ladders, lambda _s, x: p.on_ladder(x))
        op.inspect("progress_fills", fills, lambda _s, f: p.on_fill(f))
        op.inspect("progress_risk", out.risk_states, lambda _s, r: p.on_risk(r))
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
        "fills": fills,
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
    crash: Crash | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the demo, write every stream, the exchange's ground truth and the pipeline's final
    view to ``out_dir``; return the line counts and the faults injected per kind.

    ``settle_s``: the public market stops this long before the run does, so nothing trades
    while the pipeline is no longer listening and the last late requests, held events and
    stream gaps play out before the views are compared (default: 6 s under chaos, else 0).
    ``crash`` moves the replayed market (and the chain that follows it) at a moment of the
    run. ``progress`` is fed the run's ticks, quotes, fills and risk states as they happen."""
    if faults not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {faults!r}; choose one of {FAULT_MODES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Both the sink and the private stream read credentials the usual way (env); these are
    # the local exchange's own demo keys, not secrets.
    os.environ.setdefault("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    os.environ.setdefault("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    chain = LocalChain()
    demo = deploy_demo(chain, btc_usd=recorded_trades(0)[0][1])
    # The recording is moved to now only once the chain is deployed (seconds of EVM work):
    # the exchange replays from its start, and data that begins old reads as stale.
    start_ns = time.time_ns()
    offset_ns = start_ns - first_time_ns(DATA)
    offset_ms = offset_ns // 1_000_000
    trades = recorded_trades(offset_ms, crash)
    chaos = faults == "chaos"
    settle = settle_s if settle_s is not None else (6.0 if chaos else 0.0)
    until_ms = start_ns // 1_000_000 + int((seconds - settle) * 1000) if settle > 0 else None
    market: Iterator[MarketEvent] = _shifted(replay_file(DATA), offset_ms, until_ms)
    if crash is not None:
        market = crashed(market, crash, first_time_ns(DATA) // 1_000_000 + offset_ms)
        logger.info("demo crash: the market moves %+.2f%% at %.1fs", crash.pct, crash.at_s)
    latch = RunLatch(grace_s=grace_s, max_runtime_s=seconds)
    plan = chaos_plan(chaos_rate, chaos_seed) if chaos else None
    timeout_ms = CHAOS_CLIENT_TIMEOUT_MS if chaos else 5_000
    with (
        LocalExchange(
            markets=(DEMO_MARKET,), balances=DEMO_BALANCES, market=market, speed=1.0, faults=plan
        ) as exchange,
        chain.serve() as rpc,
    ):
        balances_start = exchange.call(lambda s: balance_totals(s.engine.balances("main")))
        follower = ChainFollower(demo, trades, start_ns)
        follower.start()
        try:
            rpc_config = btc_chain_config(demo.source_config(rpc.url, poll_interval_s=0.5))
            reference = ReferenceReplay(
                offset_ns=offset_ns, start_ns=first_time_ns(DATA) + offset_ns, crash=crash
            )
            flow = build_demo_flow(
                exchange.url,
                rpc_config,
                latch,
                out_dir,
                timeout_ms=timeout_ms,
                quoting=CHAOS_QUOTING if chaos else None,
                reference=reference,
                progress=progress,
            )
            logger.info(
                "demo running: exchange %s, chain %s, output %s, faults %s",
                exchange.url,
                rpc.url,
                out_dir,
                faults,
            )
            if progress is not None:
                progress.start()
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
