"""The public market the local exchange runs on: a replay of recorded Binance messages, or a
seeded synthetic random walk. Both are plain iterators of :data:`MarketEvent` in event time, so
the engine's clock is the data's clock and a run is repeatable."""

from __future__ import annotations

import gzip
import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from makerflow.exchange.engine import OrderSide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BookTop:
    time_ms: int
    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal


@dataclass(frozen=True)
class PublicTrade:
    time_ms: int
    symbol: str
    price: Decimal
    qty: Decimal
    taker_side: OrderSide


MarketEvent = BookTop | PublicTrade


def parse_recorded_line(line: str) -> MarketEvent | None:
    """One ``<receive ns> <json>`` line of a Binance recording (``bookTicker`` or ``trade``).

    The receive time is the event time: spot ``bookTicker`` carries none of its own, and one
    clock for both streams keeps them in the order they arrived. Other streams give ``None``.
    """
    ts_text, _, payload = line.partition(" ")
    if not payload:
        return None
    msg = json.loads(payload)
    stream = msg.get("stream", "")
    data = msg.get("data", msg)
    time_ms = int(ts_text) // 1_000_000
    if stream.endswith("@bookTicker"):
        return BookTop(
            time_ms,
            data["s"],
            Decimal(data["b"]),
            Decimal(data["B"]),
            Decimal(data["a"]),
            Decimal(data["A"]),
        )
    if stream.endswith("@trade"):
        # "m": the buyer is the maker, so the taker sold.
        side: OrderSide = "SELL" if data["m"] else "BUY"
        return PublicTrade(time_ms, data["s"], Decimal(data["p"]), Decimal(data["q"]), side)
    return None


def replay_file(path: str | Path, *, loop: bool = False) -> Iterator[MarketEvent]:
    """The bookTicker and trade events of a recording (plain or ``.gz``). With ``loop`` the
    recording repeats, shifted in time so the clock keeps rising."""
    p = Path(path)
    offset = 0
    while True:
        first = last = None
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt") as fh:
            for line in fh:
                try:
                    ev = parse_recorded_line(line.strip())
                except (ValueError, KeyError) as exc:
                    log.warning("skipping a malformed recorded line of %s: %s", p, exc)
                    continue
                if ev is None:
                    continue
                t = ev.time_ms + offset
                first = t if first is None else first
                last = t
                yield _shift(ev, offset)
        if not loop or first is None or last is None:
            return
        offset += last - first + 1


def _shift(ev: MarketEvent, offset: int) -> MarketEvent:
    if offset == 0:
        return ev
    if isinstance(ev, BookTop):
        return BookTop(ev.time_ms + offset, ev.symbol, ev.bid, ev.bid_qty, ev.ask, ev.ask_qty)
    return PublicTrade(ev.time_ms + offset, ev.symbol, ev.price, ev.qty, ev.taker_side)


@dataclass(frozen=True)
class RandomWalk:
    """A synthetic market: mid moves by a Gaussian step in ticks every ``interval_ms``; a
    public trade of random side and size follows each move with probability ``trade_prob``.
    Seeded: the same parameters give the same market."""

    symbol: str = "BTCUSDT"
    start_price: Decimal = Decimal("60000.00")
    tick: Decimal = Decimal("0.01")
    lot: Decimal = Decimal("0.00001")
    spread_ticks: int = 1
    sigma_ticks: float = 20.0
    interval_ms: int = 100
    trade_prob: float = 0.5
    mean_trade_qty: float = 0.05
    top_qty: Decimal = Decimal("1.00000")
    seed: int = 7
    start_time_ms: int = 1_723_161_253_900

    def events(self) -> Iterator[MarketEvent]:
        rng = random.Random(self.seed)
        mid_ticks = int(self.start_price / self.tick)
        t = self.start_time_ms
        while True:
            t += self.interval_ms
            mid_ticks = max(mid_ticks + round(rng.gauss(0.0, self.sigma_ticks)), 10)
            bid = mid_ticks * self.tick
            ask = (mid_ticks + self.spread_ticks) * self.tick
            yield BookTop(t, self.symbol, bid, self.top_qty, ask, self.top_qty)
            if rng.random() < self.trade_prob:
                qty_lots = max(
                    1, math.ceil(rng.expovariate(1.0) * self.mean_trade_qty / float(self.lot))
                )
                qty = qty_lots * self.lot
                side: OrderSide = "BUY" if rng.random() < 0.5 else "SELL"
                # A taker that sweeps a little through the top, so resting quotes near it fill.
                sweep = round(abs(rng.gauss(0.0, self.sigma_ticks))) * self.tick
                px = ask + sweep if side == "BUY" else bid - sweep
                yield PublicTrade(t, self.symbol, px, qty, side)
