"""Shared by the quoting tests: real recorded ticks and a small market configuration."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from makerflow.operators.quoting_config import MarketConfig, QuotingParams
from makerflow.operators.ticks import book_tick
from makerflow.schemas.events import Tick

TICKS_FILE = (
    Path(__file__).resolve().parent / "fixtures" / "quoting" / "btcusdt_bookticker_20240808.gz"
)


def make_tick(
    ts: int,
    bid: float,
    ask: float,
    *,
    bid_qty: float = 1.0,
    ask_qty: float = 1.0,
    venue: str = "binance",
    symbol: str = "BTC/USDT",
) -> Tick:
    return book_tick(venue, symbol, ts, bid, bid_qty, ask, ask_qty)


def load_ticks(limit: int | None = None, path: Path = TICKS_FILE) -> list[Tick]:
    """Ticks from recorded Binance spot bookTicker lines (event time = receive time)."""
    out: list[Tick] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            recv, raw = line.split(" ", 1)
            d = json.loads(raw)["data"]
            out.append(
                make_tick(
                    int(recv),
                    float(d["b"]),
                    float(d["a"]),
                    bid_qty=float(d["B"]),
                    ask_qty=float(d["A"]),
                )
            )
            if limit is not None and len(out) >= limit:
                break
    return out


def btc_market(**params: float | int | str | bool) -> tuple[MarketConfig, QuotingParams]:
    """Binance spot BTC/USDT's trading rules and parameters that quote from the first tick."""
    market = MarketConfig(
        venue="binance",
        symbol="BTC/USDT",
        tick_size=0.01,
        lot_size=0.00001,
        min_qty=0.00001,
        min_notional=5.0,
        index_basket="BTC",
    )
    base = QuotingParams(warmup_s=0.0, sigma_initial=4.0, min_quote_lifetime_s=0.0)
    return market, base.replace(dict(params))
