"""The report of a run: every figure as a polars frame, and one headline row per market.

``compute(frames)`` is a pure function of the run's raw frames (as :func:`load_run` reads
them): no I/O, no clock, the same input always gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from makerflow.reports.frames import normalise
from makerflow.reports.markouts import (
    HEADLINE_HORIZONS_S,
    fill_markouts,
    horizon_label,
    markout_curve,
)
from makerflow.reports.orders import order_stats
from makerflow.reports.pnl import max_drawdown, pnl_timeline

NS = 1_000_000_000


def _num(value: Any) -> float:
    """A polars aggregate (typed loosely by polars) as a float; null counts as 0."""
    return 0.0 if value is None else float(value)


@dataclass(frozen=True)
class Report:
    """A run's figures. ``summary`` has one row per market; the others are the series behind
    the plots (``pnl``: the PnL and inventory timeline; ``markouts``: one row per fill;
    ``markout_curve``: mean markout per horizon; ``orders``: order statistics; ``quotes`` and
    ``ticks``: our quotes and the market, for the price plot)."""

    summary: pl.DataFrame
    pnl: pl.DataFrame
    markouts: pl.DataFrame
    markout_curve: pl.DataFrame
    orders: pl.DataFrame
    quotes: pl.DataFrame
    ticks: pl.DataFrame
    fills: pl.DataFrame
    notes: tuple[str, ...] = field(default=())

    def tables(self) -> dict[str, pl.DataFrame]:
        """The frames written as parquet, by file stem."""
        return {
            "report_summary": self.summary,
            "report_pnl": self.pnl,
            "report_markouts": self.markouts,
            "report_markout_curve": self.markout_curve,
            "report_orders": self.orders,
        }

    def headline(self) -> dict[str, dict[str, Any]]:
        """The summary as ``{market: {figure: value}}``."""
        return {row["market"]: row for row in self.summary.iter_rows(named=True)}


def _market_summary(
    market: str, fills: pl.DataFrame, pnl: pl.DataFrame, markouts: pl.DataFrame, ticks: pl.DataFrame
) -> dict[str, Any]:
    mf = fills.filter(pl.col("market") == market)
    mp = pnl.filter(pl.col("market") == market)
    mm = markouts.filter(pl.col("market") == market)
    mt = ticks.filter(pl.col("market") == market)
    last = mp.row(-1, named=True) if mp.height else {}
    ts = pl.concat([mf["ts"], mt["ts"]])
    qty = mm["qty"]
    start: Any = ts.min()
    end: Any = ts.max()
    row: dict[str, Any] = {
        "market": market,
        "start_ns": start,
        "end_ns": end,
        "duration_s": (end - start) / NS if ts.len() else 0.0,
        "ticks": mt.height,
        "fills": mf.height,
        "buys": mf.filter(pl.col("side") == "buy").height,
        "sells": mf.filter(pl.col("side") == "sell").height,
        "maker_fills": mf.filter(pl.col("liquidity") == "maker").height,
        "volume": float(mf["qty"].sum()),
        "notional": float((mf["qty"] * mf["price"]).sum()),
        "realized_pnl": float(last.get("realized", 0.0)),
        "fees": float(last.get("fees", 0.0)),
        "unrealized_pnl": float(last.get("unrealized", 0.0)),
        "total_pnl": float(last.get("total", 0.0)),
        "max_drawdown": max_drawdown(mp["total"]) if mp.height else 0.0,
        "final_inventory": float(last.get("position", 0.0)),
        "min_inventory": min(0.0, _num(mp["position"].min())),
        "max_inventory": max(0.0, _num(mp["position"].max())),
        "last_mid": float(mt["mid"][-1]) if mt.height else None,
        "fees_unvalued": int(last.get("fees_unvalued", 0)),
    }

    def wmean(col: str) -> float | None:
        known = mm[col].is_not_null()
        w = qty.filter(known)
        total_w = _num(w.sum())
        return _num((mm[col].filter(known) * w).sum()) / total_w if total_w else None

    row["spread_captured"] = wmean("spread_captured") if mm.height else None
    row["spread_captured_bps"] = wmean("spread_captured_bps") if mm.height else None
    for h in HEADLINE_HORIZONS_S:
        label = horizon_label(h)
        row[f"markout_{label}"] = wmean(f"markout_{label}") if mm.height else None
        row[f"markout_{label}_bps"] = wmean(f"markout_{label}_bps") if mm.height else None
    return row


def compute(frames: dict[str, pl.DataFrame]) -> Report:
    """Every figure of the report from a run's raw frames (``ticks``, ``fills``,
    ``order_events``, ``intents``, ``ladders``; any may be missing or empty)."""
    f = normalise(frames)
    fills, ticks = f["fills"], f["ticks"]
    pnl = pnl_timeline(fills, ticks)
    markouts = fill_markouts(fills, ticks)
    curve = markout_curve(markouts)
    orders = order_stats(f["intents"], f["order_events"], fills)
    markets = sorted(set(ticks["market"].to_list()) | set(orders["market"].to_list()))
    rows = [_market_summary(m, fills, pnl, markouts, ticks) for m in markets]
    summary = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if rows:
        summary = summary.join(orders.drop("fills"), on="market", how="left")
    notes = []
    unvalued = int(summary["fees_unvalued"].sum()) if rows else 0
    if unvalued:
        notes.append(f"{unvalued} fees paid in a third asset are not in the PnL")
    no_mid = markouts.filter(pl.col("mid_at_fill").is_null()).height
    if no_mid:
        notes.append(f"{no_mid} fills came before the first tick of their market: no markout")
    return Report(
        summary=summary,
        pnl=pnl,
        markouts=markouts,
        markout_curve=curve,
        orders=orders,
        quotes=f["ladders"],
        ticks=ticks,
        fills=fills,
        notes=tuple(notes),
    )


# --- the printed table ---------------------------------------------------------------------

_ROWS: tuple[tuple[str, str, str], ...] = (
    ("start_ns", "start (UTC, event time)", "utc"),
    ("duration_s", "duration", "{:.1f} s"),
    ("ticks", "ticks", "{:,}"),
    ("orders_placed", "orders placed", "{:,}"),
    ("cancels", "cancels sent", "{:,}"),
    ("rejected", "orders rejected", "{:,}"),
    ("fills", "fills", "{:,}"),
    ("buys", "  buys", "{:,}"),
    ("sells", "  sells", "{:,}"),
    ("volume", "volume (base)", "{:.6g}"),
    ("notional", "notional (quote)", "{:,.2f}"),
    ("fill_ratio", "fill ratio (fills / orders)", "{:.2%}"),
    ("filled_order_share", "orders with a fill", "{:.2%}"),
    ("order_to_trade", "order-to-trade ratio", "{:.1f}"),
    ("realized_pnl", "realized PnL (before fees)", "{:,.2f}"),
    ("fees", "fees", "{:,.2f}"),
    ("unrealized_pnl", "unrealized PnL", "{:,.2f}"),
    ("total_pnl", "total PnL (net)", "{:,.2f}"),
    ("max_drawdown", "max drawdown", "{:,.2f}"),
    ("final_inventory", "final inventory", "{:.6g}"),
    ("min_inventory", "min inventory", "{:.6g}"),
    ("max_inventory", "max inventory", "{:.6g}"),
    ("spread_captured_bps", "spread captured", "{:.2f} bps"),
    ("markout_1s_bps", "markout 1 s", "{:+.2f} bps"),
    ("markout_10s_bps", "markout 10 s", "{:+.2f} bps"),
    ("markout_60s_bps", "markout 60 s", "{:+.2f} bps"),
)


def table_rows(report: Report) -> list[tuple[str, list[str]]]:
    """The headline figures as formatted text: (label, one cell per market)."""
    head = report.headline()
    out = []
    for key, label, fmt in _ROWS:
        cells = []
        for row in head.values():
            value = row.get(key)
            if value is None or value != value:
                cells.append("n/a")
            elif fmt == "utc":
                when = datetime.fromtimestamp(value // NS, tz=UTC)
                cells.append(f"{when:%Y-%m-%d %H:%M:%S}.{value % NS // 1_000_000:03d}")
            else:
                cells.append(fmt.format(value))
        out.append((label, cells))
    return out


def format_table(report: Report) -> str:
    """The headline figures as a fixed-width text table, one column per market."""
    markets = list(report.headline())
    if not markets:
        return "no market data in this run"
    rows = table_rows(report)
    width = max(len(label) for label, _ in rows)
    cols = [max(len(m), *(len(c[i]) for _, c in rows)) for i, m in enumerate(markets)]
    lines = [" " * width + "  " + "  ".join(m.rjust(w) for m, w in zip(markets, cols, strict=True))]
    for label, cells in rows:
        lines.append(
            label.ljust(width)
            + "  "
            + "  ".join(c.rjust(w) for c, w in zip(cells, cols, strict=True))
        )
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)
