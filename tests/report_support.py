"""Small hand-made runs for the report tests: real events, encoded as the sinks write them."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from makerflow.schemas.codec import encode
from makerflow.schemas.events import Event, Fill, OrderIntent, QuoteLadder, QuoteLevel, Tick

NS = 1_000_000_000
T0 = 1_723_161_600 * NS  # 2024-08-09 00:00:00 UTC
MARKET = {"venue": "binance", "symbol": "BTC/USDT"}


def ts(seconds: float) -> int:
    return T0 + round(seconds * NS)


def tick(seconds: float, mid: float, half: float = 0.5) -> Tick:
    return Tick(
        ts=ts(seconds), **MARKET, reason="book", bid=mid - half, bid_qty=1.0, ask=mid + half,
        ask_qty=1.0, mid=mid, microprice=mid, spread_bps=2 * half / mid * 1e4, imbalance=0.0,
    )  # fmt: skip


def fill(
    seconds: float, side: str, qty: float, price: float, fee: float, tid: str, coid: str,
    fee_asset: str = "USDT",
) -> Fill:  # fmt: skip
    return Fill(
        ts=ts(seconds), **MARKET, trade_id=tid, client_order_id=coid, side=side,  # type: ignore[arg-type]
        price=price, qty=qty, fee=fee, fee_asset=fee_asset,
    )  # fmt: skip


def place(seconds: float, coid: str, side: str, price: float) -> OrderIntent:
    return OrderIntent(
        ts=ts(seconds), **MARKET, action="place", client_order_id=coid, side=side,  # type: ignore[arg-type]
        price=price, qty=1.0,
    )  # fmt: skip


def cancel(seconds: float, coid: str) -> OrderIntent:
    return OrderIntent(ts=ts(seconds), **MARKET, action="cancel", client_order_id=coid)


def ladder(seconds: float, bids: Sequence[float], asks: Sequence[float]) -> QuoteLadder:
    return QuoteLadder(
        ts=ts(seconds), **MARKET, reference=100.0, reservation=100.0, half_spread=0.5,
        bids=tuple(QuoteLevel(price=p, qty=1.0) for p in bids),
        asks=tuple(QuoteLevel(price=p, qty=1.0) for p in asks),
    )  # fmt: skip


def frame(events: Iterable[Event]) -> pl.DataFrame:
    """The events as the report reads a JSONL stream."""
    data = b"".join(encode(e) + b"\n" for e in events)
    if not data:
        return pl.DataFrame()
    return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)


def write_run(run_dir: Path, streams: dict[str, Iterable[Event]]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, events in streams.items():
        (run_dir / f"{name}.jsonl").write_bytes(b"".join(encode(e) + b"\n" for e in events))
    return run_dir


# The hand-computed run (see test_reports.py for the arithmetic).
TICKS = [tick(0, 100), tick(1, 101), tick(2, 102), tick(3, 99), tick(20, 98), tick(70, 100)]
FILLS = [
    fill(0.5, "buy", 2.0, 99.5, 0.2, "t1", "c1"),
    fill(2.5, "sell", 1.0, 102.5, 0.1, "t2", "c2"),
    fill(21, "sell", 2.0, 98.5, 0.2, "t3", "c3"),
]
INTENTS = [
    place(0.1, "c1", "buy", 99.5),
    place(0.1, "c1", "buy", 99.5),  # redelivered: one order
    place(2.1, "c2", "sell", 102.5),
    place(20.5, "c3", "sell", 98.5),
    place(21.5, "c4", "buy", 97.5),
    cancel(30, "c4"),
]
LADDERS = [ladder(0.1, [99.5], [100.5]), ladder(2.1, [101.5], [102.5]), ladder(30, [], [])]


def hand_run() -> dict[str, pl.DataFrame]:
    return {
        "ticks": frame(TICKS),
        "fills": frame(FILLS),
        "intents": frame(INTENTS),
        "ladders": frame(LADDERS),
    }
