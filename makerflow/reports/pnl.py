"""PnL, inventory and drawdown of a run, marked to the mid.

Position and realized PnL follow the risk engine's own book
(:class:`makerflow.operators.risk_windows.PnlBook`: average cost; a fee in the base asset
shrinks the position and is charged at the fill price; a fee in another asset is not valued),
so the report and the kill switch agree on what the PnL was. Here realized PnL is shown before
fees and fees apart: ``total = realized - fees + unrealized``, with
``unrealized = position * (mid - average cost)``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from makerflow.operators.risk_windows import PnlBook

FILL_STATE_SCHEMA = {
    "market": pl.String,
    "ts": pl.Int64,
    "position": pl.Float64,
    "avg_cost": pl.Float64,
    "realized": pl.Float64,
    "fees": pl.Float64,
    "fees_unvalued": pl.Int64,
}


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTC/USDT`` -> (BTC, USDT); ``BTC/USDT:USDT`` -> (BTC, USDT)."""
    base, _, rest = symbol.partition("/")
    return base, rest.partition(":")[0]


def fee_in_quote(price: float, fee: float, fee_asset: str, base: str, quote: str) -> float | None:
    """A fee's value in the quote asset; ``None`` when it is paid in a third asset."""
    if not fee:
        return 0.0
    if fee_asset == base:
        return fee * price
    if fee_asset in (quote, ""):
        return fee
    return None


def fill_states(fills: pl.DataFrame) -> pl.DataFrame:
    """After each fill (deduplicated, oldest first): position, average cost, realized PnL
    before fees, cumulative fees in the quote asset, per market."""
    rows: list[dict[str, object]] = []
    books: dict[str, tuple[PnlBook, list[float], list[int]]] = {}
    for f in fills.iter_rows(named=True):
        market = f["market"]
        if market not in books:
            base, quote = split_symbol(f["symbol"])
            books[market] = (PnlBook(base=base, quote=quote), [0.0], [0])
        book, fees, unvalued = books[market]
        fee_asset = f["fee_asset"] or book.quote  # an unlabelled fee is in the quote
        valued = fee_in_quote(f["price"], f["fee"], fee_asset, book.base, book.quote)
        book.on_fill(f["side"], f["price"], f["qty"], f["fee"], fee_asset)
        if valued is None:
            unvalued[0] += 1
        else:
            fees[0] += valued
        rows.append(
            {
                "market": market,
                "ts": f["ts"],
                "position": book.position,
                "avg_cost": book.avg_cost,
                "realized": book.realized + fees[0],
                "fees": fees[0],
                "fees_unvalued": unvalued[0],
            }
        )
    return pl.DataFrame(rows, schema=FILL_STATE_SCHEMA, orient="row")


def pnl_timeline(fills: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
    """PnL over event time, one row per tick and per fill of each traded market:
    ``ts, market, kind, mid, position, avg_cost, realized, fees, unrealized, total,
    drawdown``. Before the first tick a fill is marked at its own price."""
    states = fill_states(fills)
    traded = states["market"].unique().to_list()
    mids = ticks.filter(pl.col("market").is_in(traded)).select("market", "ts", "mid")
    state_cols = ["position", "avg_cost", "realized", "fees", "fees_unvalued"]
    at_ticks = (
        mids.sort("ts")
        .join_asof(
            states.sort("ts"), on="ts", by="market", strategy="backward", check_sortedness=False
        )
        .with_columns(pl.lit("tick").alias("kind"), pl.col(state_cols).fill_null(0))
    )
    fill_prices = fills.select("market", "ts", pl.col("price").alias("fill_price"))
    at_fills = (
        pl.concat([states, fill_prices.drop("market", "ts")], how="horizontal")
        .sort("ts")
        .join_asof(
            mids.sort("ts"), on="ts", by="market", strategy="backward", check_sortedness=False
        )
        .with_columns(pl.lit("fill").alias("kind"), pl.coalesce("mid", "fill_price").alias("mid"))
        .drop("fill_price")
    )
    cols = ["ts", "market", "kind", "mid", *state_cols]
    line = (
        pl.concat([at_ticks.select(cols), at_fills.select(cols)])
        .with_row_index("_n")
        # At one event time the fill comes after the tick that priced it; fills keep their order.
        .sort("market", "ts", pl.col("kind") == "fill", "_n")
        .drop("_n")
        .with_columns(unrealized=pl.col("position") * (pl.col("mid") - pl.col("avg_cost")))
        .with_columns(total=pl.col("realized") - pl.col("fees") + pl.col("unrealized"))
    )
    peak = pl.max_horizontal(pl.col("total").cum_max().over("market"), pl.lit(0.0))
    return line.with_columns(drawdown=peak - pl.col("total"))


def max_drawdown(totals: pl.Series) -> float:
    """The largest fall of a PnL series from its running peak (the peak starts at zero)."""
    if totals.is_empty():
        return 0.0
    peak = totals.cum_max().clip(lower_bound=0.0)
    worst: Any = (peak - totals).max()
    return 0.0 if worst is None else float(worst)
