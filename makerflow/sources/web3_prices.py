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
import logging
import threading
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import aiohttp
import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async
from eth_abi.exceptions import DecodingError
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception
from web3.providers.async_base import AsyncJSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from makerflow import metrics
from makerflow.schemas.events import DeadLetter, DexPrice, OraclePrice
from makerflow.sources.web3_config import FeedSpec, PoolSpec, Web3SourceConfig
from makerflow.sources.web3_poller import BlockPoller
from makerflow.sources.web3_readers import (
    ChainEvent,
    ChainlinkReader,
    Reader,
    V2PairReader,
    V3PoolReader,
    checksum,
)

log = logging.getLogger(__name__)

RPC_FAILURES: tuple[type[BaseException], ...] = (
    Web3Exception,
    aiohttp.ClientError,
    TimeoutError,
    ConnectionError,
    DecodingError,
)
"""What a node or the network can do to a call; anything else is a bug and is raised."""


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
        reader: Reader,
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
            parts[f"{pool.kind}:{checksum(pool.address)}"] = pool
        for feed in config.feeds:
            parts[f"chainlink:{checksum(feed.address)}"] = feed
        self._parts = parts

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Web3Partition:
        spec = self._parts[for_part]
        chain = self.config.chain
        reader: Reader
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
