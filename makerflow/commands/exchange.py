"""``makerflow exchange``: the local exchange (Binance spot API subset) on loopback.

Credentials for its one account come from ``MAKERFLOW_EXCHANGE_API_KEY`` /
``MAKERFLOW_EXCHANGE_SECRET`` (or ``--secret-file``); the secret is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from makerflow.exchange.faults import CHAOS_KINDS, FaultPlan
from makerflow.exchange.local import (
    BTCUSDT,
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    ETHUSDT,
    LocalExchange,
)
from makerflow.exchange.market_data import RandomWalk
from makerflow.exchange.server import ApiKey

MARKETS = {"BTCUSDT": BTCUSDT, "ETHUSDT": ETHUSDT}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "exchange",
        help="run the local exchange (Binance spot API subset for ccxt) on loopback",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--market", choices=sorted(MARKETS), default="BTCUSDT")
    p.add_argument(
        "--replay",
        type=Path,
        help="a recorded Binance file (<ns> <json> lines, bookTicker and trade) to replay; "
        "default: a seeded random walk",
    )
    p.add_argument("--speed", type=float, default=1.0, help="event-time seconds per second")
    p.add_argument("--seed", type=int, default=7, help="random walk seed")
    p.add_argument("--start-price", default="60000.00", help="random walk start price")
    p.add_argument("--account", default="main")
    p.add_argument(
        "--balance",
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="starting balance (repeatable); default USDT=100000 BTC=2 ETH=20",
    )
    p.add_argument("--secret-file", type=Path, help="file holding the API secret")
    p.add_argument(
        "--order-rate-limit",
        metavar="RATE[:BURST]",
        help="orders per second (and burst) per key before the venue answers 429",
    )
    p.add_argument(
        "--chaos-rate",
        type=float,
        default=0.0,
        help="strike this share of order requests and private order reports with a seeded mix"
        " of faults (lost answers, late requests, 429/418, expiries, duplicated, reordered and"
        " lost private events); the counts per kind are in GET /_admin/state",
    )
    p.add_argument("--chaos-seed", type=int, default=0, help="the chaos mix's seed")
    p.add_argument(
        "--chaos-kinds",
        help=f"comma-separated chaos kinds (default all: {','.join(CHAOS_KINDS)})",
    )
    p.add_argument(
        "--order-lifetime-ms",
        type=int,
        help="the venue expires open orders that rested this long (event time)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = MARKETS[args.market]
    balances: dict[str, Decimal] = {"USDT": Decimal(100_000), "BTC": Decimal(2), "ETH": Decimal(20)}
    for item in args.balance:
        asset, _, amount = item.partition("=")
        balances[asset.upper()] = Decimal(amount)
    key = os.environ.get("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    if args.secret_file is not None:
        secret = args.secret_file.read_text().strip()
    else:
        secret = os.environ.get("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    market = None
    if args.replay is None:
        market = RandomWalk(
            symbol=spec.symbol,
            start_price=Decimal(args.start_price),
            tick=spec.tick_size,
            lot=spec.step_size,
            seed=args.seed,
        ).events()
    order_rate_limit = None
    if args.order_rate_limit:
        rate, _, burst = args.order_rate_limit.partition(":")
        order_rate_limit = (float(rate), float(burst or rate))
    faults = None
    if args.chaos_rate > 0:
        kinds = tuple(k.strip() for k in args.chaos_kinds.split(",")) if args.chaos_kinds else None
        faults = FaultPlan.chaos(args.chaos_rate, args.chaos_seed, kinds)
    exchange = LocalExchange(
        markets=(spec,),
        balances={args.account: balances},
        keys=(ApiKey(key, secret, args.account),),
        market=market,
        replay=args.replay,
        speed=args.speed,
        host=args.host,
        port=args.port,
        order_rate_limit=order_rate_limit,
        faults=faults,
        order_lifetime_ms=args.order_lifetime_ms,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with exchange:
        print(
            f"local exchange (binance spot API) on {exchange.url}, market {spec.symbol}, "
            f"account {args.account!r}, api key {key!r} (Ctrl-C to stop)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0
