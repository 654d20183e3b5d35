"""A local chain: an in-process EVM (eth-tester, py-evm backend) with the project's contracts.

:class:`LocalChain` deploys the minimal ERC-20, Uniswap V2 pair, Uniswap V3 pool and Chainlink
aggregator contracts (``contracts/*.sol``, compiled into ``artifacts/*.json`` by
``build_contracts.sh``; nothing compiles at run time) and moves their prices. Every change is
a transaction, mined in a block of its own, emitting the same events a mainnet contract would.

Sources never touch this object: :meth:`LocalChain.serve` puts it behind a real JSON-RPC HTTP
server on loopback, and sources reach it with ``AsyncWeb3(AsyncHTTPProvider(url))`` as they
would reach a production node. ``deploy_demo`` builds the demo's markets in one call::

    from makerflow.chain.local import LocalChain, deploy_demo

    chain = LocalChain()
    demo = deploy_demo(chain)                 # tokens, pools and feeds for ETH and BTC
    with chain.serve() as server:             # http://127.0.0.1:<port>
        cfg = demo.source_config(server.url)  # Web3SourceConfig for makerflow.sources.web3_prices
        chain.set_v3_price(demo.pools["uniswap_v3:ETH/USDC"], 3100.0)

The object is thread-safe: the RPC server's thread and the caller's share one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from makerflow.chain.abi import abi_of, load_artifact
from makerflow.chain.rpc_server import RpcServer
from makerflow.operators import dex_math
from makerflow.sources.web3_config import FeedSpec, PoolSpec, Web3SourceConfig

V3_TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}


@dataclass(frozen=True)
class Token:
    symbol: str
    address: str
    decimals: int


@dataclass(frozen=True)
class Pool:
    """A deployed V2 pair or V3 pool; ``base`` is the token whose price it quotes."""

    kind: str
    """``uniswap_v2`` or ``uniswap_v3``."""
    address: str
    token0: Token
    token1: Token
    base: Token
    quote: Token
    fee: int = 3000

    @property
    def base_is_token0(self) -> bool:
        return self.base.address == self.token0.address

    def spec(self, base: str | None = None, quote: str | None = None) -> PoolSpec:
        """This pool as a source config entry; ``base``/``quote`` rename the assets
        (``WETH`` is priced as ``ETH``)."""
        return PoolSpec(
            kind=self.kind,  # type: ignore[arg-type]
            address=self.address,
            base=base or self.base.symbol,
            quote=quote or self.quote.symbol,
            base_token=self.base.address,
        )


@dataclass(frozen=True)
class Feed:
    """A deployed Chainlink-style aggregator."""

    address: str
    base: str
    quote: str
    decimals: int

    def spec(self) -> FeedSpec:
        return FeedSpec(address=self.address, base=self.base, quote=self.quote)


class LocalChain:
    """An in-process EVM with helpers to deploy the project's contracts and move prices."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.tester = EthereumTester(PyEVMBackend())
        provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(provider)
        """A synchronous client for the helpers (the owner's transactions)."""
        # The RPC server answers with the eth-tester provider's own request formatting only:
        # no attribute dicts or other client-side middleware, as a node would answer.
        self._raw = Web3(provider, middleware=[])
        self._raw_request = provider.request_func(self._raw, self._raw.middleware_onion)
        self.owner = self.w3.eth.accounts[0]
        self.w3.eth.default_account = self.owner
        self._servers: list[RpcServer] = []

    # --- chain ------------------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        with self._lock:
            return int(self.w3.eth.block_number)

    def block_timestamp(self, block: int | None = None) -> int:
        """The timestamp (seconds) of ``block``, the head by default."""
        with self._lock:
            return int(self.w3.eth.get_block("latest" if block is None else block)["timestamp"])

    def mine(self, blocks: int = 1) -> int:
        """Mine empty blocks; returns the new head."""
        with self._lock:
            self.tester.mine_blocks(blocks)
            return int(self.w3.eth.block_number)

    def time_travel(self, timestamp: int) -> None:
        """Set the next block's timestamp (seconds); it must be after the head's."""
        with self._lock:
            self.tester.time_travel(timestamp)

    def rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        """Answer one JSON-RPC call: ``{"result": ...}`` or ``{"error": ...}``, wire-encoded."""
        with self._lock:
            response = self._raw_request(method, params)
        if "error" in response and response["error"] is not None:
            err = response["error"]
            if isinstance(err, dict):
                return {
                    "error": {
                        "code": int(err.get("code", -32000)),
                        "message": str(err.get("message", err)),
                    }
                }
            return {"error": {"code": -32000, "message": str(err)}}
        return {"result": _wire(response.get("result"))}

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> RpcServer:
        """A JSON-RPC HTTP server for this chain, started (use it as a context manager)."""
        server = RpcServer(self.rpc, host=host, port=port).start()
        self._servers.append(server)
        return server

    # --- contracts --------------------------------------------------------------------------

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi_of(name))

    def deploy(self, name: str, *args: Any) -> Contract:
        """Deploy ``contracts/<name>.sol`` with constructor ``args``."""
        art = load_artifact(name)
        with self._lock:
            factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            tx = factory.constructor(*args).transact({"from": self.owner})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
            if receipt["status"] != 1:
                raise RuntimeError(f"deploying {name} reverted")
            address = receipt["contractAddress"]
            assert address is not None
            return self.contract(name, address)

    def _transact(self, fn: Any) -> int:
        """Send an owner transaction; returns the block it was mined in."""
        with self._lock:
            tx = fn.transact({"from": self.owner})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
            if receipt["status"] != 1:
                raise RuntimeError(f"transaction {HexBytes(tx).to_0x_hex()} reverted")
            return int(receipt["blockNumber"])

    def deploy_token(self, symbol: str, decimals: int, supply: float = 1e12) -> Token:
        c = self.deploy("TestERC20", symbol, symbol, decimals, int(supply * 10**decimals))
        return Token(symbol=symbol, address=str(c.address), decimals=decimals)

    def _ordered(self, a: Token, b: Token) -> tuple[Token, Token]:
        # The factories order a pool's tokens by address; so do the mock contracts.
        return (a, b) if int(a.address, 16) < int(b.address, 16) else (b, a)

    def deploy_v2_pair(self, base: Token, quote: Token, price: float, depth: float) -> Pool:
        """A V2 pair quoting ``price`` (quote per base) worth ``depth`` quote units."""
        c = self.deploy("MockUniswapV2Pair", base.address, quote.address)
        t0, t1 = self._ordered(base, quote)
        pool = Pool("uniswap_v2", str(c.address), t0, t1, base, quote, fee=3000)
        self.set_v2_price(pool, price, depth)
        return pool

    def set_v2_reserves(self, pool: Pool, reserve0: int, reserve1: int) -> int:
        """Set a pair's raw reserves (emits Sync); returns the block."""
        c = self.contract("MockUniswapV2Pair", pool.address)
        return self._transact(c.functions.setReserves(reserve0, reserve1))

    def set_v2_price(self, pool: Pool, price: float, depth: float | None = None) -> int:
        """Move a pair to ``price``, keeping its value (``depth``, quote units) unless given."""
        if depth is None:
            r0, r1, _ = (
                self.contract("MockUniswapV2Pair", pool.address).functions.getReserves().call()
            )
            depth = 2.0 * dex_math.v2_quote_reserve(
                r0,
                r1,
                pool.token0.decimals,
                pool.token1.decimals,
                base_is_token0=pool.base_is_token0,
            )
        r0, r1 = dex_math.v2_reserves_for_price(
            price,
            depth,
            pool.token0.decimals,
            pool.token1.decimals,
            base_is_token0=pool.base_is_token0,
        )
        return self.set_v2_reserves(pool, r0, r1)

    def deploy_v3_pool(
        self, base: Token, quote: Token, price: float, liquidity: int, fee: int = 500
    ) -> Pool:
        """A V3 pool quoting ``price`` (quote per base) with ``liquidity`` (raw L)."""
        spacing = V3_TICK_SPACING.get(fee, 60)
        c = self.deploy("MockUniswapV3Pool", base.address, quote.address, fee, spacing)
        t0, t1 = self._ordered(base, quote)
        pool = Pool("uniswap_v3", str(c.address), t0, t1, base, quote, fee=fee)
        sqrt_p = self._sqrt_price(pool, price)
        self._transact(
            c.functions.initialize(sqrt_p, dex_math.tick_at_sqrt_price(sqrt_p), liquidity)
        )
        return pool

    def _sqrt_price(self, pool: Pool, price: float) -> int:
        return dex_math.sqrt_price_x96_from_price(
            price, pool.token0.decimals, pool.token1.decimals, base_is_token0=pool.base_is_token0
        )

    def set_v3_sqrt_price(
        self, pool: Pool, sqrt_price_x96: int, liquidity: int | None = None
    ) -> int:
        """Set a pool's raw ``sqrtPriceX96`` (emits Swap); returns the block."""
        c = self.contract("MockUniswapV3Pool", pool.address)
        if liquidity is None:
            liquidity = int(c.functions.liquidity().call())
        tick = dex_math.tick_at_sqrt_price(sqrt_price_x96)
        return self._transact(c.functions.setPrice(sqrt_price_x96, tick, liquidity))

    def set_v3_price(self, pool: Pool, price: float, liquidity: int | None = None) -> int:
        """Move a pool to ``price`` (quote per base); returns the block."""
        return self.set_v3_sqrt_price(pool, self._sqrt_price(pool, price), liquidity)

    def deploy_feed(self, base: str, quote: str, price: float, decimals: int = 8) -> Feed:
        """A Chainlink-style ``BASE / QUOTE`` feed answering ``price``."""
        c = self.deploy(
            "MockAggregatorV3",
            decimals,
            f"{base} / {quote}",
            dex_math.chainlink_answer(price, decimals),
        )
        return Feed(address=str(c.address), base=base, quote=quote, decimals=decimals)

    def set_feed_price(self, feed: Feed, price: float, updated_at: int | None = None) -> int:
        """A new round answering ``price``; ``updated_at`` (seconds) back-dates it to test
        stale rounds. Returns the block."""
        c = self.contract("MockAggregatorV3", feed.address)
        answer = dex_math.chainlink_answer(price, feed.decimals)
        if updated_at is None:
            return self._transact(c.functions.updateAnswer(answer))
        return self._transact(c.functions.updateRoundData(answer, updated_at, updated_at))


def _wire(value: Any, key: str = "") -> Any:
    """eth-tester's Python answer in JSON-RPC wire form: quantities as ``0x`` hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _wire(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


@dataclass
class Demo:
    """The demo's markets on a local chain: tokens, pools and feeds by name."""

    chain: LocalChain
    tokens: dict[str, Token] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    feeds: dict[str, Feed] = field(default_factory=dict)
    asset_names: dict[str, str] = field(default_factory=dict)
    """Token symbol to the asset it prices (``WETH`` -> ``ETH``)."""

    def source_config(self, rpc_url: str, **overrides: Any) -> Web3SourceConfig:
        """A source config that reads every demo pool and feed from ``rpc_url``."""
        pools = tuple(
            p.spec(
                base=self.asset_names.get(p.base.symbol, p.base.symbol),
                quote=self.asset_names.get(p.quote.symbol, p.quote.symbol),
            )
            for p in self.pools.values()
        )
        feeds = tuple(f.spec() for f in self.feeds.values())
        return Web3SourceConfig(
            rpc_url=rpc_url, chain="local", pools=pools, feeds=feeds, **overrides
        )


def deploy_demo(chain: LocalChain, eth_usd: float = 3000.0, btc_usd: float = 60000.0) -> Demo:
    """Deploy the demo's markets: USDC (6 decimals), WETH (18), WBTC (8); a V2 WETH/USDC pair,
    V3 WETH/USDC and WBTC/USDC pools (token order decided by address, as on mainnet), and
    Chainlink ``ETH / USD`` and ``BTC / USD`` feeds (8 decimals)."""
    demo = Demo(chain=chain, asset_names={"WETH": "ETH", "WBTC": "BTC"})
    usdc = demo.tokens["USDC"] = chain.deploy_token("USDC", 6)
    weth = demo.tokens["WETH"] = chain.deploy_token("WETH", 18)
    wbtc = demo.tokens["WBTC"] = chain.deploy_token("WBTC", 8)
    demo.pools["uniswap_v2:ETH/USDC"] = chain.deploy_v2_pair(weth, usdc, eth_usd, depth=50e6)
    # L chosen so the active liquidity is worth tens of millions of USDC at these prices.
    demo.pools["uniswap_v3:ETH/USDC"] = chain.deploy_v3_pool(
        weth, usdc, eth_usd, liquidity=10**18 * 2, fee=500
    )
    demo.pools["uniswap_v3:BTC/USDC"] = chain.deploy_v3_pool(
        wbtc, usdc, btc_usd, liquidity=10**14, fee=3000
    )
    demo.feeds["ETH/USD"] = chain.deploy_feed("ETH", "USD", eth_usd)
    demo.feeds["BTC/USD"] = chain.deploy_feed("BTC", "USD", btc_usd)
    return demo
