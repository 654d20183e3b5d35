"""Headline figures of a backtest from its output directory, for a sweep's table.

One implementation: every figure is read from :mod:`makerflow.reports` (the report the run
writes as parquet and HTML) and only summed over the run's markets here, so a sweep's table
and the report never disagree on what a figure means (``fill_ratio`` is fills / orders
placed in both; ``filled_order_share`` is the orders that got a fill).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from makerflow.reports.frames import load_run
from makerflow.reports.summary import compute


def _sum(rows: list[dict[str, Any]], col: str) -> float:
    return float(sum(r.get(col) or 0.0 for r in rows))


def _count(rows: list[dict[str, Any]], col: str) -> int:
    return int(sum(r.get(col) or 0 for r in rows))


def headline(out_dir: str | Path) -> dict[str, float | int]:
    """The report's per-market figures over all markets of the run: net PnL (marked to the
    last mid of each market), PnL before fees, fees, volume (quote notional), fills, final
    and extreme inventory, orders placed, rejected orders, fill ratio (fills / orders
    placed), share of orders with a fill, order-to-trade ratio."""
    rows = list(compute(load_run(Path(out_dir))).headline().values())
    pnl = _sum(rows, "total_pnl")
    fees = _sum(rows, "fees")
    fills = _count(rows, "fills")
    placed = _count(rows, "orders_placed")
    filled = _count(rows, "orders_filled")
    messages = placed + _count(rows, "cancels")
    return {
        "pnl": pnl,
        "pnl_before_fees": pnl + fees,
        "fees": fees,
        "volume": _sum(rows, "notional"),
        "fills": fills,
        "position": _sum(rows, "final_inventory"),
        "min_position": min((r.get("min_inventory") or 0.0 for r in rows), default=0.0),
        "max_position": max((r.get("max_inventory") or 0.0 for r in rows), default=0.0),
        "orders": placed,
        "rejects": _count(rows, "rejected"),
        "fill_ratio": fills / placed if placed else 0.0,
        "filled_order_share": filled / placed if placed else 0.0,
        "order_to_trade": messages / fills if fills else 0.0,
    }
