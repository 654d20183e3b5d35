"""Bytewax sources of on-chain prices: Uniswap V2 pairs, Uniswap V3 pools, Chainlink feeds.

One partition per pool or feed, so pools spread across workers. Each partition talks to an
Ethereum JSON-RPC node through ``AsyncWeb3`` over HTTP (:class:`SessionHTTPProvider`) on its own
event loop,
driven by :func:`bytewax.inputs.batch_async` so ``next_batch`` never blocks for long.

Every poll it asks for the head block. For the blocks it has not seen it follows the contract's
price events (V2 ``Sync``, V3 ``Swap``, Chainlink ``AnswerUpdated``) with ``eth_getLogs``, so
no change between two polls is missed; when a pool has been quiet for ``heartbeat_blocks`` it
reads the state itself (``getReserves``, ``slot0``, ``latestRoundData``) so the index sees the
price as fresh. Events carry the block number and the block's time (``ts``, ns).

RPC failures (refused connections, HTTP errors, JSON-RPC errors, time-outs) are logged,
counted (``makerflow_web3_rpc_errors``) and retried with exponential back-off from the last
block done: they never stop the flow and lose no change. Pool state that cannot be a price
(empty reserves, an incomplete Chainlink round) becomes a :class:`DeadLetter`. A pool whose
configured base token is not one of its tokens is a configuration error and stops the flow
with a message saying so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, cast

import aiohttp
import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async
from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic
from web3 import AsyncWeb3, Web3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception
from web3.providers.async_base import AsyncJSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from makerflow import metrics
from makerflow.chain.abi import AGGREGATOR_V3, ERC20, UNISWAP_V2_PAIR, UNISWAP_V3_POOL, abi_of
from makerflow.operators import dex_math
from makerflow.schemas.config import Config
from makerflow.schemas.events import DeadLetter, DexPrice, OraclePrice

log = logging.getLogger(__name__)

NS = 1_000_000_000

ChainEvent = DexPrice | OraclePrice | DeadLetter

RPC_FAILURES: tuple[type[BaseException], ...] = (
    Web3Exception,
    aiohttp.ClientError,
    TimeoutError,
    ConnectionError,
    DecodingError,
)
"""What a node or the network can do to a call; anything else is a bug and is raised."""


# --- configuration ---------------------------------------------------------------------------


class PoolSpec(Config, frozen=True, kw_only=True):
    """A DEX pool to read: which contract, and which of its tokens is the base."""

    kind: Literal["uniswap_v2", "uniswap_v3"]
    address: str
    base: str
    """The asset the pool prices (``ETH``), as the index names it."""
    quote: str
    """The asset it is priced in (``USDC``)."""
    base_token: str
    """The base token's address (WETH's); decides whether the price is token1/token0 or its
    inverse, whatever the address order of the pool's tokens."""
    venue: str | None = None
    """The venue name on events; defaults to ``kind``."""


class FeedSpec(Config, frozen=True, kw_only=True):
    """A Chainlink AggregatorV3 feed (``BASE / QUOTE``)."""

    address: str
    base: str
    quote: str
    venue: str = "chainlink"


class Web3SourceConfig(Config, frozen=True, kw_only=True):
    """Where and what to read on chain, and how hard to try."""

    rpc_url: str
    chain: str = "ethereum"
    pools: tuple[PoolSpec, ...] = ()
    feeds: tuple[FeedSpec, ...] = ()
    poll_interval_s: float = 1.0
    """How often to ask for a new head block (a mainnet block comes every 12 s)."""
    heartbeat_blocks: int = 4
    """Read and emit a quiet pool's state at least every this many blocks, so the index
    (``dex_max_age_s``, 60 s by default) sees it fresh: 4 mainnet blocks are 48 s."""
    confirmations: int = 0
    """Read this many blocks behind the head, so a short re-organisation is never read."""
    max_block_range: int = 500
    """The most blocks one ``eth_getLogs`` covers when catching up."""
    rpc_timeout_s: float = 5.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    depth_bps: float = 10.0
    """A pool's ``liquidity`` on its events is the quote notional that moves its price by
    this much, comparable to a CEX book's depth near the touch."""
    batch_timeout_s: float = 0.05
    """How long ``next_batch`` may run the partition's event loop."""


# --- readers: one contract's state and events into prices -----------------------------------


class ConfigurationError(RuntimeError):
    """The configuration does not match the chain; retrying cannot help."""


def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))


class _Reader:
    """Reads one contract: set up once, then state at a block, or prices from its logs."""

    abi_name: str
    event_name: str

    def __init__(self, chain: str, step: str, address: str) -> None:
        self.chain = chain
        self.step = step
        self.address = _checksum(address)
        abi = abi_of(self.abi_name)
        event_abi = next(
            e for e in abi if e.get("type") == "event" and e["name"] == self.event_name
        )
        self.topic = "0x" + event_abi_to_log_topic(event_abi).hex()  # type: ignore[arg-type]
        self.contract: AsyncContract | None = None

    def bind(self, w3: AsyncWeb3[Any]) -> AsyncContract:
        self.contract = w3.eth.contract(address=self.address, abi=abi_of(self.abi_name))  # type: ignore[call-overload]
        return self.contract

    async def setup(self, w3: AsyncWeb3[Any]) -> None:
        self.bind(w3)

    async def read_state(self, block: int, ts: int) -> ChainEvent:
        raise NotImplementedError

    def from_log(self, log_entry: Any, ts: int) -> ChainEvent:
        raise NotImplementedError

    def _decode(self, log_entry: Any) -> dict[str, Any]:
        assert self.contract is not None
        event = getattr(self.contract.events, self.event_name)()
        return dict(event.process_log(log_entry)["args"])

    def dead_letter(self, ts: int, reason: str, raw: dict[str, Any]) -> DeadLetter:
        metrics.DEAD_LETTERS.labels(step=self.step).inc()
        log.warning("%s %s: %s", self.step, self.address, reason)
        payload = {"chain": self.chain, "address": self.address, **raw}
        return DeadLetter(
            ts=ts,
            step=self.step,
            reason=reason,
            raw=json.dumps(payload, default=str).encode(),
            key=f"{self.chain}:{self.address}".encode(),
        )


class _PoolReader(_Reader):
    def __init__(self, chain: str, step: str, spec: PoolSpec, depth_bps: float) -> None:
        super().__init__(chain, step, spec.address)
        self.spec = spec
        self.venue = spec.venue or spec.kind
        self.decimals0 = 0
        self.decimals1 = 0
        self.base_is_token0 = True
        self.depth_bps = depth_bps

    async def setup(self, w3: AsyncWeb3[Any]) -> None:
        c = self.bind(w3)
        token0 = _checksum(await c.functions.token0().call())
        token1 = _checksum(await c.functions.token1().call())
        base = _checksum(self.spec.base_token)
        if base not in (token0, token1):
            raise ConfigurationError(
                f"pool {self.address}: base_token {base} is neither token0 {token0} nor token1 "
                f"{token1}; fix base_token in the pool's config"
            )
        self.base_is_token0 = base == token0
        self.decimals0 = int(await _erc20(w3, token0).functions.decimals().call())
        self.decimals1 = int(await _erc20(w3, token1).functions.decimals().call())
        log.info(
            "%s %s %s: %s/%s, token0 %s (%d dp), token1 %s (%d dp), base is token%d",
            self.step, self.venue, self.address, self.spec.base, self.spec.quote,
            token0, self.decimals0, token1, self.decimals1, 0 if self.base_is_token0 else 1,
        )  # fmt: skip

    def _price(self, block: int, ts: int, price: float, quote_reserve: float) -> DexPrice:
        return DexPrice(
            ts=ts,
            chain=self.chain,
            venue=self.venue,
            pool=self.address,
            base=self.spec.base,
            quote=self.spec.quote,
            block=block,
            price=price,
            liquidity=dex_math.depth_to_move(quote_reserve, self.depth_bps),
        )


class V2PairReader(_PoolReader):
    abi_name = UNISWAP_V2_PAIR
    event_name = "Sync"

    def _from_reserves(self, block: int, ts: int, r0: int, r1: int) -> ChainEvent:
        d0, d1, b0 = self.decimals0, self.decimals1, self.base_is_token0
        try:
            price = dex_math.v2_price(r0, r1, d0, d1, base_is_token0=b0)
        except ValueError as exc:
            return self.dead_letter(ts, str(exc), {"block": block, "reserve0": r0, "reserve1": r1})
        reserve = dex_math.v2_quote_reserve(r0, r1, d0, d1, base_is_token0=b0)
        return self._price(block, ts, price, reserve)

    async def read_state(self, block: int, ts: int) -> ChainEvent:
        assert self.contract is not None
        r0, r1, _ = await self.contract.functions.getReserves().call(block_identifier=block)
        return self._from_reserves(block, ts, int(r0), int(r1))

    def from_log(self, log_entry: Any, ts: int) -> ChainEvent:
        args = self._decode(log_entry)
        block = int(log_entry["blockNumber"])
        return self._from_reserves(block, ts, int(args["reserve0"]), int(args["reserve1"]))


class V3PoolReader(_PoolReader):
    abi_name = UNISWAP_V3_POOL
    event_name = "Swap"

    def _from_sqrt(self, block: int, ts: int, sqrt_p: int, liquidity: int) -> ChainEvent:
        d0, d1, b0 = self.decimals0, self.decimals1, self.base_is_token0
        try:
            price = dex_math.v3_price(sqrt_p, d0, d1, base_is_token0=b0)
        except ValueError as exc:
            return self.dead_letter(
                ts, str(exc), {"block": block, "sqrtPriceX96": sqrt_p, "liquidity": liquidity}
            )
        reserve = dex_math.v3_quote_reserve(liquidity, sqrt_p, d0, d1, base_is_token0=b0)
        return self._price(block, ts, price, reserve)

    async def read_state(self, block: int, ts: int) -> ChainEvent:
        assert self.contract is not None
        slot0 = await self.contract.functions.slot0().call(block_identifier=block)
        liquidity = await self.contract.functions.liquidity().call(block_identifier=block)
        return self._from_sqrt(block, ts, int(slot0[0]), int(liquidity))

    def from_log(self, log_entry: Any, ts: int) -> ChainEvent:
        args = self._decode(log_entry)
        block = int(log_entry["blockNumber"])
        return self._from_sqrt(block, ts, int(args["sqrtPriceX96"]), int(args["liquidity"]))


class ChainlinkReader(_Reader):
    abi_name = AGGREGATOR_V3
    event_name = "AnswerUpdated"

    def __init__(self, chain: str, step: str, spec: FeedSpec) -> None:
        super().__init__(chain, step, spec.address)
        self.spec = spec
        self.decimals = 8

    async def setup(self, w3: AsyncWeb3[Any]) -> None:
        c = self.bind(w3)
        self.decimals = int(await c.functions.decimals().call())
        description = await c.functions.description().call()
        log.info(
            "%s chainlink %s: %r, %d decimals", self.step, self.address, description, self.decimals
        )

    def _round(
        self, block: int, ts: int, round_id: int, answer: int, updated_at: int, answered_in: int
    ) -> ChainEvent:
        raw = {
            "block": block,
            "roundId": round_id,
            "answer": answer,
            "updatedAt": updated_at,
            "answeredInRound": answered_in,
        }
        # Chainlink's own guidance for consumers: a round that is not complete, or that carries
        # an answer from an earlier round, is not a current price.
        if updated_at == 0:
            return self.dead_letter(ts, f"round {round_id} is not complete (updatedAt = 0)", raw)
        if answered_in < round_id:
            return self.dead_letter(
                ts, f"stale round: round {round_id} was answered in round {answered_in}", raw
            )
        if answer <= 0:
            return self.dead_letter(ts, f"non-positive answer {answer} in round {round_id}", raw)
        return OraclePrice(
            ts=ts,
            chain=self.chain,
            feed=self.address,
            base=self.spec.base,
            quote=self.spec.quote,
            block=block,
            round_id=round_id,
            price=dex_math.chainlink_price(answer, self.decimals),
            updated_at=updated_at * NS,
        )

    async def read_state(self, block: int, ts: int) -> ChainEvent:
        assert self.contract is not None
        (
            rid,
            answer,
            _started,
            updated,
            answered_in,
        ) = await self.contract.functions.latestRoundData().call(block_identifier=block)
        return self._round(block, ts, int(rid), int(answer), int(updated), int(answered_in))

    def from_log(self, log_entry: Any, ts: int) -> ChainEvent:
        args = self._decode(log_entry)
        rid = int(args["roundId"])
        block = int(log_entry["blockNumber"])
        return self._round(block, ts, rid, int(args["current"]), int(args["updatedAt"]), rid)


def _erc20(w3: AsyncWeb3[Any], address: str) -> AsyncContract:
    return w3.eth.contract(address=address, abi=abi_of(ERC20))  # type: ignore[call-overload]


# --- the poller: which blocks to read, and what to emit ----------------------------------------


class BlockPoller:
    """Follows one contract block by block from a cursor (the last block fully emitted)."""

    def __init__(self, reader: _Reader, config: Web3SourceConfig, cursor: int | None) -> None:
        self.reader = reader
        self.config = config
        self.cursor = cursor
        self.last_emit: int | None = None
        self.ready = False
        self._block_ts: dict[int, int] = {}

    async def _ts(self, w3: AsyncWeb3[Any], block: int) -> int:
        ts = self._block_ts.get(block)
        if ts is None:
            ts = int((await w3.eth.get_block(block))["timestamp"]) * NS
            if len(self._block_ts) > 256:
                self._block_ts.clear()
            self._block_ts[block] = ts
        return ts

    async def step(self, w3: AsyncWeb3[Any]) -> tuple[int, list[ChainEvent], bool]:
        """One poll: ``(new cursor, events, caught_up)``. Raises on RPC failure, leaving the
        cursor where it was so the next try reads the same blocks."""
        if not self.ready:
            await self.reader.setup(w3)
            self.ready = True
        head = int(await w3.eth.block_number) - self.config.confirmations
        if head < 0:
            return (self.cursor or 0, [], True)
        if self.cursor is None or head < self.cursor:
            if self.cursor is not None:
                log.warning(
                    "%s %s: head %d is behind the resume block %d (re-organised or another "
                    "chain); starting again from the head",
                    self.reader.step, self.reader.address, head, self.cursor,
                )  # fmt: skip
            event = await self.reader.read_state(head, await self._ts(w3, head))
            self.cursor = self.last_emit = head
            return (head, [event], True)
        if head == self.cursor:
            return (head, [], True)
        to = min(head, self.cursor + self.config.max_block_range)
        logs = await w3.eth.get_logs(
            {
                "address": self.reader.address,  # type: ignore[typeddict-item]
                "fromBlock": self.cursor + 1,
                "toBlock": to,
                "topics": [self.reader.topic],
            }
        )
        ordered = sorted(logs, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        events: list[ChainEvent] = []
        for entry in ordered:
            ts = await self._ts(w3, int(entry["blockNumber"]))
            events.append(self.reader.from_log(entry, ts))
        if events:
            self.last_emit = int(ordered[-1]["blockNumber"])
        elif self.last_emit is None or to - self.last_emit >= self.config.heartbeat_blocks:
            events.append(await self.reader.read_state(to, await self._ts(w3, to)))
            self.last_emit = to
        self.cursor = to
        return (to, events, to == head)


# --- Bytewax ---------------------------------------------------------------------------------


class SessionHTTPProvider(AsyncJSONBaseProvider):
    """JSON-RPC over HTTP for ``AsyncWeb3`` with one aiohttp session of its own.

    web3's ``AsyncHTTPProvider`` guards a process-wide session cache with a class-level
    thread lock taken through a thread pool on every request. Bytewax runs each partition's
    event loop only inside ``next_batch``, so a partition holding that lock between batches
    stalls every other partition's requests, and one closed mid-request keeps it forever.
    Each partition therefore owns this provider and its session; web3's own retries are
    replaced by the partition's back-off from the last block done.
    """

    def __init__(self, endpoint_uri: str, timeout_s: float) -> None:
        super().__init__()
        self.endpoint_uri = endpoint_uri
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def _post(self, data: bytes) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                raise_for_status=True,
                headers={"Content-Type": "application/json"},
            )
        async with self._session.post(self.endpoint_uri, data=data) as response:
            return await response.read()

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return self.decode_rpc_response(await self._post(self.encode_rpc_request(method, params)))

    async def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        raw = await self._post(self.encode_batch_rpc_request(batch_requests))
        return cast(list[RPCResponse] | RPCResponse, self.decode_rpc_response(raw))

    async def disconnect(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __str__(self) -> str:
        return f"JSON-RPC over HTTP at {self.endpoint_uri}"


def _new_w3(config: Web3SourceConfig) -> AsyncWeb3[Any]:
    return AsyncWeb3(SessionHTTPProvider(config.rpc_url, config.rpc_timeout_s))


class _Web3Partition(StatefulSourcePartition[ChainEvent, int | None]):
    """One pool or feed. Resume state: the last block whose events were all emitted."""

    def __init__(
        self,
        part: str,
        reader: _Reader,
        config: Web3SourceConfig,
        resume: int | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.part = part
        self.config = config
        self._stop = stop
        self.poller = BlockPoller(reader, config, resume)
        self._cursor = resume
        self._errors = metrics.WEB3_RPC_ERRORS.labels(source=part)
        self._loop = asyncio.new_event_loop()
        self._w3 = _new_w3(config)
        # batch_async is a generator (typed as an iterator); it is closed in close().
        self._batches = cast(
            Generator[list[tuple[int, list[ChainEvent]]], None, None],
            batch_async(
                self._run(), timedelta(seconds=config.batch_timeout_s), 64, loop=self._loop
            ),
        )

    async def _run(self) -> AsyncIterator[tuple[int, list[ChainEvent]]]:
        backoff = self.config.backoff_initial_s
        failures = 0
        while True:
            try:
                cursor, events, caught_up = await self.poller.step(self._w3)
            except RPC_FAILURES as exc:
                failures += 1
                self._errors.inc()
                # The first failure of a run is logged loudly, the rest quietly: a node that
                # is down for an hour must not flood the log.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%s: RPC failed (%s: %s); retrying in %.2fs",
                        self.part, type(exc).__name__, exc, backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            if failures:
                log.warning("%s: RPC back after %d failed attempts", self.part, failures)
                failures = 0
                backoff = self.config.backoff_initial_s
            yield (cursor, events)
            if caught_up:
                await asyncio.sleep(self.config.poll_interval_s)

    def next_batch(self) -> list[ChainEvent]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        out: list[ChainEvent] = []
        for cursor, events in next(self._batches):
            out.extend(events)
            self._cursor = cursor
        return out

    def snapshot(self) -> int | None:
        return self._cursor

    def close(self) -> None:
        loop = self._loop
        try:
            # The poll in flight (batch_async keeps it between batches) is cancelled so the
            # session closes with no request half-sent.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._batches.close()
            loop.run_until_complete(self._w3.provider.disconnect())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:  # closing must not fail a shutdown
            log.debug("%s: closing the RPC session failed", self.part, exc_info=True)
        finally:
            loop.close()


class Web3PriceSource(FixedPartitionedSource[ChainEvent, int | None]):
    """Every configured pool and feed, one partition each. Setting ``stop`` ends every
    partition at its next batch (a graceful shutdown; the flow then ends)."""

    def __init__(self, config: Web3SourceConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop
        parts: dict[str, PoolSpec | FeedSpec] = {}
        for pool in config.pools:
            parts[f"{pool.kind}:{_checksum(pool.address)}"] = pool
        for feed in config.feeds:
            parts[f"chainlink:{_checksum(feed.address)}"] = feed
        self._parts = parts

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Web3Partition:
        spec = self._parts[for_part]
        chain = self.config.chain
        reader: _Reader
        if isinstance(spec, FeedSpec):
            reader = ChainlinkReader(chain, step_id, spec)
        elif spec.kind == "uniswap_v2":
            reader = V2PairReader(chain, step_id, spec, self.config.depth_bps)
        else:
            reader = V3PoolReader(chain, step_id, spec, self.config.depth_bps)
        return _Web3Partition(for_part, reader, self.config, resume_state, self.stop)


@dataclass(frozen=True)
class ChainPriceStreams:
    oks: Stream[DexPrice | OraclePrice]
    """Pool prices and oracle answers."""
    errs: Stream[DeadLetter]
    """Pool state or rounds that could not be a price, with the reason."""


@operator
def web3_prices_input(
    step_id: str, flow: Dataflow, config: Web3SourceConfig, stop: threading.Event | None = None
) -> ChainPriceStreams:
    """Read every configured pool and feed: prices on ``oks``, unusable state on ``errs``."""
    events = op.input("web3", flow, Web3PriceSource(config, stop))
    split = op.branch("split", events, _is_price)
    return ChainPriceStreams(oks=split.trues, errs=split.falses)  # type: ignore[arg-type]


def _is_price(event: ChainEvent) -> bool:
    return not isinstance(event, DeadLetter)


def parts_of(config: Web3SourceConfig) -> Iterable[str]:
    """The partition names a config makes (``uniswap_v3:0x...``, ``chainlink:0x...``)."""
    return Web3PriceSource(config).list_parts()
