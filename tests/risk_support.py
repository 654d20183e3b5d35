"""Real recorded ticks for the risk tests.

``tests/fixtures/risk/btcusdt_bookticker_3min.gz`` is the first three minutes (13 515 messages)
of Binance spot BTCUSDT ``@bookTicker`` from ``shared/data/binance/spot/btcusdt_20240808.gz``
(hftbacktest example data, 2024-08-08 23:54:14 UTC on), kept as recorded: ``<recv ns> <JSON>``.
bookTicker carries no event time, so the receive time is the tick's ``ts``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from makerflow.operators.market_ticks import book_tick
from makerflow.schemas.events import Tick

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "risk" / "btcusdt_bookticker_3min.gz"
VENUE = "binance"
SYMBOL = "BTC/USDT"
MARKET = f"{VENUE}:{SYMBOL}"


def tick_from_book_ticker(ts: int, d: dict[str, str], scale: float = 1.0) -> Tick:
    bid, ask = float(d["b"]) * scale, float(d["a"]) * scale
    bq, aq = float(d["B"]), float(d["A"])
    return book_tick(VENUE, SYMBOL, ts, bid, bq, ask, aq)


def recorded_ticks(limit: int | None = None, ts_shift: int = 0) -> list[Tick]:
    """The recorded ticks in order; ``ts_shift`` moves them in time (to make them live)."""
    out: list[Tick] = []
    with gzip.open(FIXTURE, "rt") as f:
        for line in f:
            recv, _, raw = line.partition(" ")
            out.append(tick_from_book_ticker(int(recv) + ts_shift, json.loads(raw)["data"]))
            if limit is not None and len(out) >= limit:
                break
    return out


def with_jump(ticks: list[Tick], at: int, factor: float = 1.10) -> list[Tick]:
    """The ticks with every price from index ``at`` on multiplied by ``factor``: a jump."""

    def scaled(t: Tick) -> Tick:
        return Tick(
            ts=t.ts,
            venue=t.venue,
            symbol=t.symbol,
            reason=t.reason,
            bid=t.bid * factor,
            bid_qty=t.bid_qty,
            ask=t.ask * factor,
            ask_qty=t.ask_qty,
            mid=t.mid * factor,
            microprice=t.microprice * factor,
            spread_bps=t.spread_bps,
            imbalance=t.imbalance,
        )

    return ticks[:at] + [scaled(t) for t in ticks[at:]]
