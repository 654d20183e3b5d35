"""Headline figures of a backtest from its output directory (pure over the files' events).

The full reports (markouts, drawdown curves, the HTML) are :mod:`makerflow.reports`; these
few numbers are what a sweep's table compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from makerflow.schemas.events import Fill, OrderEvent, OrderIntent, Tick


def _read(path: Path, kind: Any) -> Iterable[Any]:
    if not path.exists():
        return []
    dec = msgspec.json.Decoder(kind)
    with path.open("rb") as f:
        return [dec.decode(line) for line in f if line.strip()]


def headline(out_dir: str | Path) -> dict[str, float | int]:
    """PnL (marked to the last mid of each market), fees, volume, fills, inventory range,
    orders placed, rejects and the fill ratio (orders with a fill / orders placed)."""
    d = Path(out_dir)
    fills: list[Fill] = list(_read(d / "fills.jsonl", Fill))
    intents: list[OrderIntent] = list(_read(d / "intents.jsonl", OrderIntent))
    events: list[OrderEvent] = list(_read(d / "order_events.jsonl", OrderEvent))
    last_mid: dict[str, float] = {}
    for t in _read(d / "ticks.jsonl", Tick):
        last_mid[t.key] = t.mid
    cash: dict[str, float] = {}
    position: dict[str, float] = {}
    fees = volume = 0.0
    low = high = 0.0
    for f in fills:
        sign = 1.0 if f.side == "buy" else -1.0
        position[f.key] = position.get(f.key, 0.0) + sign * f.qty
        cash[f.key] = cash.get(f.key, 0.0) - sign * f.qty * f.price - f.fee
        fees += f.fee
        volume += f.qty * f.price
        low, high = min(low, position[f.key]), max(high, position[f.key])
    pnl = sum(cash[k] + position[k] * last_mid.get(k, 0.0) for k in cash)
    placed = [i for i in intents if i.action == "place"]
    filled_orders = {f.client_order_id for f in fills}
    rejects = sum(1 for e in events if e.status == "rejected")
    return {
        "pnl": pnl,
        "pnl_before_fees": pnl + fees,
        "fees": fees,
        "volume": volume,
        "fills": len(fills),
        "position": sum(position.values()),
        "min_position": low,
        "max_position": high,
        "orders": len(placed),
        "rejects": rejects,
        "fill_ratio": len(filled_orders) / len(placed) if placed else 0.0,
    }
