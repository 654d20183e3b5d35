"""``makerflow chain``: a local chain with the project's contracts, over JSON-RPC on loopback.

Deploys USDC, WETH and WBTC, a V2 WETH/USDC pair, V3 WETH/USDC and WBTC/USDC pools and
Chainlink ETH/USD and BTC/USD feeds, prints their addresses and the RPC URL, optionally writes
the dex_ingest config for them, mines a block every ``--block-time`` seconds, and, with
``--move-every``, walks the prices randomly so the demo has something to show.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

from makerflow.chain.local import Demo, LocalChain, deploy_demo
from makerflow.flows.dex_ingest import dump_dex_config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "chain", help="run a local EVM with the project's pools and feeds (JSON-RPC on loopback)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--eth", type=float, default=3000.0, help="starting ETH price in USD")
    p.add_argument("--btc", type=float, default=60000.0, help="starting BTC price in USD")
    p.add_argument("--config-out", type=Path, help="write the dex_ingest TOML config here")
    p.add_argument(
        "--move-every", type=float, default=0.0, help="seconds between random price moves (0: off)"
    )
    p.add_argument(
        "--block-time", type=float, default=2.0, help="seconds between blocks when idle (0: off)"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the random price walk")
    p.set_defaults(func=run)


def move_prices(demo: Demo, prices: dict[str, float], rng: random.Random) -> None:
    """One step of a random walk of ETH and BTC on every pool and feed."""
    for asset in prices:
        prices[asset] *= 1.0 + rng.gauss(0.0, 0.001)
    chain = demo.chain
    # The V2 pair sits a few bps off the V3 pool, as real pools do.
    chain.set_v2_price(demo.pools["uniswap_v2:ETH/USDC"], prices["ETH"] * 1.0005)
    chain.set_v3_price(demo.pools["uniswap_v3:ETH/USDC"], prices["ETH"])
    chain.set_v3_price(demo.pools["uniswap_v3:BTC/USDC"], prices["BTC"])
    chain.set_feed_price(demo.feeds["ETH/USD"], prices["ETH"])
    chain.set_feed_price(demo.feeds["BTC/USD"], prices["BTC"])


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    chain = LocalChain()
    demo = deploy_demo(chain, eth_usd=args.eth, btc_usd=args.btc)
    with chain.serve(host=args.host, port=args.port) as server:
        print(f"chain JSON-RPC on {server.url} (chain id {chain.w3.eth.chain_id})", flush=True)
        for name, token in demo.tokens.items():
            print(f"  token {name:<6} {token.address} ({token.decimals} decimals)")
        for name, pool in demo.pools.items():
            print(f"  pool  {name:<22} {pool.address}")
        for name, feed in demo.feeds.items():
            print(f"  feed  {name:<22} {feed.address}")
        if args.config_out is not None:
            args.config_out.write_text(dump_dex_config(demo.source_config(server.url)))
            print(f"dex_ingest config written to {args.config_out}")
        print("Ctrl-C to stop", flush=True)
        rng = random.Random(args.seed)
        prices = {"ETH": args.eth, "BTC": args.btc}
        # A real chain makes blocks whether or not anyone trades; so does this one, so the
        # sources' heartbeats keep quiet pools fresh.
        intervals = [t for t in (args.block_time, args.move_every) if t > 0]
        tick = min(intervals) if intervals else 3600.0
        last_move = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(tick):
                if args.move_every > 0 and time.monotonic() - last_move >= args.move_every:
                    last_move = time.monotonic()
                    move_prices(demo, prices, rng)
                elif args.block_time > 0:
                    chain.mine(1)
    return 0
