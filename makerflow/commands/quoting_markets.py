"""``makerflow quoting-markets``: the ``[[markets]]`` of a quoting config, from ccxt.

Loads the venue's markets with the unmodified ccxt client (public endpoints, no credentials)
and prints each requested market's tick, lot, minimum quantity and minimum notional as TOML,
read in the exchange's own precision mode (ccxt's TICK_SIZE or DECIMAL_PLACES)::

    makerflow quoting-markets --exchange binance BTC/USDT ETH/USDT >> quoting.toml
    makerflow quoting-markets --url http://127.0.0.1:8765 BTC/USDT   # the local exchange
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from makerflow.operators.quoting_config import MarketConfig, market_from_ccxt, markets_toml


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "quoting-markets",
        help="print [[markets]] for the quoter's config from the venue's ccxt market info",
    )
    p.add_argument("symbols", nargs="+", help="ccxt unified symbols, e.g. BTC/USDT")
    p.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
    p.add_argument("--venue", help="venue name in makerflow keys (default: the exchange id)")
    p.add_argument("--url", help="a local exchange (http://127.0.0.1:PORT) instead of the venue")
    p.add_argument("--account", default="main")
    p.set_defaults(func=run)


async def fetch_markets(
    exchange_id: str, url: str | None, symbols: list[str]
) -> tuple[list[dict[str, Any]], int]:
    """The ccxt markets of ``symbols`` and the exchange's precision mode."""
    if url is not None:
        from makerflow.exchange.local import ccxt_client

        client = ccxt_client(url, "", "")
    else:
        import ccxt.async_support as ccxt_async

        client = getattr(ccxt_async, exchange_id)()
    try:
        await client.load_markets()
        missing = [s for s in symbols if s not in client.markets]
        if missing:
            raise ValueError(f"{exchange_id} has no market {', '.join(missing)}")
        return [client.markets[s] for s in symbols], int(client.precisionMode)
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    try:
        found, mode = asyncio.run(fetch_markets(args.exchange, args.url, list(args.symbols)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    venue = args.venue or args.exchange
    markets: tuple[MarketConfig, ...] = tuple(
        market_from_ccxt(venue, m, mode, account=args.account) for m in found
    )
    print(markets_toml(markets), end="")
    return 0
