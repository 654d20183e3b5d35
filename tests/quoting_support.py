"""Shared by the quoting tests: real recorded ticks and a small market configuration."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import msgspec

from makerflow.operators.market_ticks import book_tick
from makerflow.operators.quoting_config import MarketConfig, QuotingParams
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


DEMO_FILE = (
    Path(__file__).resolve().parents[1]
    / "makerflow"
    / "demo"
    / "data"
    / "binance_spot_btcusdt_20240808_2min.gz"
)
"""Two minutes of recorded Binance spot BTC/USDT (bookTicker, trades, depth), the demo's."""
VOLATILE_FILE = TICKS_FILE.with_name("btcusdt_tops_trades_20240808_2357.gz")
"""Two later, volatile minutes of the same recording (bookTicker and trades)."""


def load_market_ticks(path: Path = DEMO_FILE) -> list[Tick]:
    """Book ticks (bookTicker) and trade ticks (each ``@trade`` with the top of book it met)
    in receive-time order, as the ticks operator emits them."""
    out: list[Tick] = []
    top: Tick | None = None
    with gzip.open(path, "rt") as f:
        for line in f:
            recv, raw = line.split(" ", 1)
            if "@bookTicker" in raw:
                d = json.loads(raw)["data"]
                top = make_tick(
                    int(recv),
                    float(d["b"]),
                    float(d["a"]),
                    bid_qty=float(d["B"]),
                    ask_qty=float(d["A"]),
                )
                out.append(top)
            elif "@trade" in raw and top is not None:
                d = json.loads(raw)["data"]
                out.append(
                    msgspec.structs.replace(
                        top,
                        ts=max(int(recv), top.ts),
                        reason="trade",
                        last_price=float(d["p"]),
                        last_qty=float(d["q"]),
                    )
                )
    return out


def grid_sigma(ticks: list[Tick], grid_s: float = 1.0) -> float:
    """Realized volatility (price per sqrt(s)) of the mid sampled every ``grid_s``."""
    step = round(grid_s * 1e9)
    mids: list[float] = []
    nxt = (ticks[0].ts // step + 1) * step
    last = ticks[0].mid
    for t in ticks:
        while t.ts >= nxt:
            mids.append(last)
            nxt += step
        last = t.mid
    moves = [b - a for a, b in itertools.pairwise(mids)]
    return math.sqrt(sum(m * m for m in moves) / len(moves) / grid_s)
