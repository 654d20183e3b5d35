"""What the on-chain price sources read: the pools and feeds, the node, and how hard to try."""

from __future__ import annotations

from typing import Literal

from makerflow.schemas.config import Config


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
