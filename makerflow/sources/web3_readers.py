"""Readers of on-chain prices: one contract's state and events (Uniswap V2 ``Sync``, V3
``Swap``, Chainlink ``AnswerUpdated``) into :class:`DexPrice` and :class:`OraclePrice` events.
Pool state that cannot be a price (empty reserves, an incomplete Chainlink round) becomes a
:class:`DeadLetter`; a pool whose configured base token is not one of its tokens is a
:class:`ConfigurationError`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3 import AsyncWeb3, Web3
from web3.contract import AsyncContract

from makerflow import metrics
from makerflow.chain.abi import AGGREGATOR_V3, ERC20, UNISWAP_V2_PAIR, UNISWAP_V3_POOL, abi_of
from makerflow.operators import dex_math
from makerflow.schemas.events import DeadLetter, DexPrice, OraclePrice
from makerflow.sources.web3_config import FeedSpec, PoolSpec

log = logging.getLogger(__name__)

NS = 1_000_000_000

ChainEvent = DexPrice | OraclePrice | DeadLetter


class ConfigurationError(RuntimeError):
    """The configuration does not match the chain; retrying cannot help."""


def checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))


class Reader:
    """Reads one contract: set up once, then state at a block, or prices from its logs."""

    abi_name: str
    event_name: str

    def __init__(self, chain: str, step: str, address: str) -> None:
        self.chain = chain
        self.step = step
        self.address = checksum(address)
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


class _PoolReader(Reader):
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
        token0 = checksum(await c.functions.token0().call())
        token1 = checksum(await c.functions.token1().call())
        base = checksum(self.spec.base_token)
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


class ChainlinkReader(Reader):
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
