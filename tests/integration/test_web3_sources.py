"""The web3 price sources against the in-process chain, over real JSON-RPC on loopback.

The chain runs the project's contracts (same ABI as Uniswap V2/V3 and Chainlink); prices are
moved by transactions and must arrive as events, with the block and its time; failures are
real (HTTP 503s, JSON-RPC errors, the server not listening) and must be survived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import bytewax.operators as op
import pytest
import rlp
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from eth_utils import keccak

from makerflow import metrics
from makerflow.chain.local import Demo, LocalChain, Pool, deploy_demo
from makerflow.chain.rpc_server import RpcServer
from makerflow.flows.common import FlowSettings
from makerflow.flows.dex_ingest import build_flow as build_dex_flow
from makerflow.flows.dex_ingest import dump_dex_config, load_dex_config
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.schemas import topics as reg
from makerflow.schemas.events import DeadLetter, DexPrice, OraclePrice
from makerflow.schemas.topics import Topic
from makerflow.sources.web3_config import PoolSpec, Web3SourceConfig
from makerflow.sources.web3_prices import Web3PriceSource, web3_prices_input
from makerflow.sources.web3_readers import ConfigurationError

pytestmark = pytest.mark.slow

NS = 1_000_000_000
FAST = {
    "poll_interval_s": 0.05,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "rpc_timeout_s": 1.0,
}


@dataclass
class Env:
    chain: LocalChain
    demo: Demo
    server: RpcServer
    flipped: Pool
    """A V3 pool whose base (WETH) is token1: the price is the inverse of token1/token0."""


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    chain = LocalChain()
    demo = deploy_demo(chain)
    weth = demo.tokens["WETH"]
    # A quote token that sorts below WETH, so the pool's token0 is the quote: a contract's
    # address follows from its deployer's nonce, so skip nonces with empty transactions
    # until the next deployment lands below WETH.
    nonce = chain.w3.eth.get_transaction_count(chain.owner)
    while create_address(chain.owner, nonce) >= int(weth.address, 16):
        chain.w3.eth.send_transaction({"from": chain.owner, "to": chain.owner, "value": 0})
        nonce += 1
    quote = chain.deploy_token("USDx", 6)
    flipped = chain.deploy_v3_pool(weth, quote, 3000.0, liquidity=10**18)
    assert not flipped.base_is_token0
    demo.pools["uniswap_v3:ETH/USDx"] = flipped
    demo.asset_names[quote.symbol] = "USDC"
    with chain.serve() as server:
        yield Env(chain, demo, server, flipped)


def create_address(sender: str, nonce: int) -> int:
    """The address (as an int) of the contract ``sender`` deploys at ``nonce``."""
    return int.from_bytes(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:], "big")


class Running:
    """A dex-prices flow on a thread, collecting what it emits, stopped on exit."""

    def __init__(self, config: Web3SourceConfig) -> None:
        self.stop = threading.Event()
        self.prices: list[DexPrice | OraclePrice] = []
        self.dead: list[DeadLetter] = []
        flow = Dataflow("web3_test")
        s = web3_prices_input("chain", flow, config, stop=self.stop)
        op.output("prices", s.oks, TestingSink(self.prices))
        op.output("dead", s.errs, TestingSink(self.dead))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(flow,), daemon=True)

    def _run(self, flow: Dataflow) -> None:
        try:
            run_main(flow)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the flow did not stop"

    def wait_for(
        self, pred: Callable[[DexPrice | OraclePrice], bool], timeout: float = 15.0
    ) -> DexPrice | OraclePrice:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.error is None, f"the flow failed: {self.error!r}"
            for p in list(self.prices):
                if pred(p):
                    return p
            time.sleep(0.02)
        raise AssertionError(f"no matching event within {timeout}s; got {self.prices[-5:]}")


def pool_event(pool: Pool, price: float, block: int) -> Callable[[DexPrice | OraclePrice], bool]:
    return lambda p: (
        isinstance(p, DexPrice) and p.pool == pool.address and p.block == block
        and p.price == pytest.approx(price, rel=1e-9)
    )  # fmt: skip


def test_price_changes_on_chain_arrive_as_events(env: Env) -> None:
    chain, demo = env.chain, env.demo
    v2, v3 = demo.pools["uniswap_v2:ETH/USDC"], demo.pools["uniswap_v3:ETH/USDC"]
    btc, feed = demo.pools["uniswap_v3:BTC/USDC"], demo.feeds["ETH/USD"]
    with Running(demo.source_config(env.server.url, **FAST)) as run:
        head = chain.block_number
        # First, each pool's and feed's state at the head.
        for pool in demo.pools.values():
            run.wait_for(lambda p, a=pool.address: isinstance(p, DexPrice) and p.pool == a)
        run.wait_for(lambda p: isinstance(p, OraclePrice) and p.feed == feed.address)

        b1 = chain.set_v3_price(v3, 3100.0)
        b2 = chain.set_v2_price(v2, 3050.0)
        b3 = chain.set_v3_price(btc, 61000.0)
        b4 = chain.set_v3_price(env.flipped, 2990.0)
        b5 = chain.set_feed_price(feed, 3090.0)
        assert head < b1 < b2 < b3 < b4 < b5

        e1 = run.wait_for(pool_event(v3, 3100.0, b1))
        assert isinstance(e1, DexPrice)
        assert (e1.venue, e1.base, e1.quote, e1.chain) == ("uniswap_v3", "ETH", "USDC", "local")
        assert e1.ts == chain.block_timestamp(b1) * NS
        assert e1.liquidity > 0
        e2 = run.wait_for(pool_event(v2, 3050.0, b2))
        assert e2.ts == chain.block_timestamp(b2) * NS
        assert isinstance(e2, DexPrice) and e2.venue == "uniswap_v2"
        run.wait_for(pool_event(btc, 61000.0, b3))
        e4 = run.wait_for(pool_event(env.flipped, 2990.0, b4))
        assert isinstance(e4, DexPrice) and (e4.base, e4.quote) == ("ETH", "USDC")
        # The other feed's heartbeat read can land on the same block: match this feed.
        e5 = run.wait_for(
            lambda p: isinstance(p, OraclePrice) and p.feed == feed.address and p.block == b5
        )
        assert isinstance(e5, OraclePrice)
        assert e5.price == pytest.approx(3090.0)
        assert e5.round_id == 2
        assert e5.updated_at == e5.ts == chain.block_timestamp(b5) * NS
    assert run.dead == []


def test_rpc_failures_are_survived(env: Env) -> None:
    chain, demo, server = env.chain, env.demo, env.server
    v3 = demo.pools["uniswap_v3:ETH/USDC"]
    cfg = Web3SourceConfig(
        rpc_url=server.url, chain="local", pools=(v3.spec(base="ETH", quote="USDC"),), **FAST
    )
    errors = metrics.WEB3_RPC_ERRORS.labels(source=f"uniswap_v3:{v3.address}")
    with Running(cfg) as run:
        run.wait_for(lambda p: p.block == chain.block_number)
        before = errors._value.get()

        # HTTP 503s, then JSON-RPC errors, then the node gone altogether.
        server.fail_next(3, "http_503")
        server.fail_next(3, "rpc_error")
        b1 = chain.set_v3_price(v3, 3200.0)
        run.wait_for(pool_event(v3, 3200.0, b1))
        assert server.pending_failures == 0

        server.stop()
        b2 = chain.set_v3_price(v3, 3300.0)
        b3 = chain.set_v3_price(v3, 3400.0)
        time.sleep(0.5)
        assert not any(p.block >= b2 for p in run.prices)
        server.start()
        # Both changes made while the node was away arrive, in order, none lost.
        run.wait_for(pool_event(v3, 3400.0, b3))
        seen = [p.block for p in run.prices if p.block >= b2]
        assert seen[:2] == [b2, b3]

        # An answer slower than the client's time-out is a failure too.
        server.fail_next(1, "slow", delay_s=1.5)
        b4 = chain.set_v3_price(v3, 3500.0)
        run.wait_for(pool_event(v3, 3500.0, b4))
        assert errors._value.get() >= before + 8
    assert run.error is None


def test_unusable_state_becomes_a_dead_letter(env: Env) -> None:
    chain = env.chain
    usdc, weth = env.demo.tokens["USDC"], env.demo.tokens["WETH"]
    pair = chain.deploy_v2_pair(weth, usdc, 3000.0, depth=1e6)
    feed = chain.deploy_feed("ETH", "USD", 3000.0)
    cfg = Web3SourceConfig(
        rpc_url=env.server.url, chain="local", pools=(pair.spec(base="ETH"),), feeds=(feed.spec(),),
        **FAST,
    )  # fmt: skip
    with Running(cfg) as run:
        run.wait_for(lambda p: isinstance(p, DexPrice) and p.pool == pair.address)
        b1 = chain.set_v2_reserves(pair, 0, 0)
        b2 = chain.set_feed_price(feed, -5.0)
        b3 = chain.set_v2_price(pair, 2900.0, depth=1e6)
        run.wait_for(pool_event(pair, 2900.0, b3))
        deadline = time.monotonic() + 10
        while len(run.dead) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    reasons = sorted(d.reason for d in run.dead)
    assert reasons == [
        "V2 reserves must be positive, got (0, 0)",
        "non-positive answer -500000000 in round 2",
    ]
    assert {d.step for d in run.dead} == {"web3_test.chain.web3"}
    assert all(b"block" in d.raw for d in run.dead)
    assert {b1, b2} <= {int(d.raw.split(b'"block": ')[1].split(b",")[0]) for d in run.dead}


def test_resume_catches_up_on_missed_blocks(env: Env) -> None:
    chain, v3 = env.chain, env.demo.pools["uniswap_v3:ETH/USDC"]
    cfg = Web3SourceConfig(
        rpc_url=env.server.url, chain="local", pools=(v3.spec(base="ETH"),), **FAST
    )
    source = Web3PriceSource(cfg)
    (part_name,) = source.list_parts()
    resume_at = chain.block_number
    b1 = chain.set_v3_price(v3, 2500.0)
    chain.mine(3)
    b2 = chain.set_v3_price(v3, 2600.0)
    part = source.build_part("resume", part_name, resume_at)
    try:
        got: list[DexPrice] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += [e for e in part.next_batch() if isinstance(e, DexPrice)]
        assert [(e.block, round(e.price, 6)) for e in got] == [(b1, 2500.0), (b2, 2600.0)]
        assert part.snapshot() == chain.block_number
    finally:
        part.close()


def test_wrong_base_token_is_a_configuration_error(env: Env) -> None:
    v3 = env.demo.pools["uniswap_v3:ETH/USDC"]
    spec = PoolSpec(
        kind="uniswap_v3", address=v3.address, base="BTC", quote="USDC",
        base_token=env.demo.tokens["WBTC"].address,
    )  # fmt: skip
    source = Web3PriceSource(Web3SourceConfig(rpc_url=env.server.url, pools=(spec,), **FAST))
    part = source.build_part("cfg", source.list_parts()[0], None)
    try:
        with pytest.raises(ConfigurationError, match="neither token0"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                part.next_batch()
    finally:
        part.close()


def test_dex_ingest_service_writes_kafka(env: Env, broker, unique, tmp_path) -> None:
    chain, demo = env.chain, env.demo
    v2 = demo.pools["uniswap_v2:ETH/USDC"]
    # The config as `makerflow chain --config-out` writes it, read back as the service does.
    path = tmp_path / "dex.toml"
    path.write_text(dump_dex_config(demo.source_config(env.server.url, **FAST)))
    config = load_dex_config(path)
    assert config == demo.source_config(env.server.url, **FAST)
    topic = Topic(unique("dex.prices"), "pool", reg.DEX_PRICES.value_type)
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [topic.name, reg.DEAD_LETTERS.name])
    stop = threading.Event()
    flow = build_dex_flow(FlowSettings(brokers=brokers), config, topic, "dex_kafka", stop)
    runner = threading.Thread(target=run_main, args=(flow,), daemon=True)
    runner.start()
    try:
        b1 = chain.set_v2_price(v2, 3123.0)
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            for m in read_topic(brokers, topic.name, idle=0.3, timeout=5):
                ev = reg.DEX_PRICES.codec.decode(m.value())
                if isinstance(ev, DexPrice) and ev.block == b1 and ev.pool == v2.address:
                    found = (m.key(), ev)
        assert found is not None, "the price change never reached the topic"
        key, ev = found
        assert key == f"local:{v2.address}".encode()
        assert ev.price == pytest.approx(3123.0)
    finally:
        stop.set()
        runner.join(timeout=20)
    assert not runner.is_alive()
