"""Order statistics: how many orders we placed and cancelled, how many filled.

* ``orders_placed``: distinct client order ids we asked to place (the intents); when a run has
  no intents stream, the distinct orders the venue reported (order events).
* ``cancels``: cancel and cancel-all requests sent.
* ``fill_ratio = fills / orders_placed``: executions per order placed.
* ``filled_order_share``: the share of placed orders that got at least one fill.
* ``order_to_trade = (orders_placed + cancels) / fills``: order messages per execution, the
  ratio venues and regulators cap (MiFID II RTS 9 counts new orders, amendments and cancels).
"""

from __future__ import annotations

import polars as pl

ORDER_STATS_SCHEMA = {
    "market": pl.String,
    "orders_placed": pl.Int64,
    "cancels": pl.Int64,
    "rejected": pl.Int64,
    "orders_filled": pl.Int64,
    "fills": pl.Int64,
    "fill_ratio": pl.Float64,
    "filled_order_share": pl.Float64,
    "order_to_trade": pl.Float64,
}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def order_stats(
    intents: pl.DataFrame, order_events: pl.DataFrame, fills: pl.DataFrame
) -> pl.DataFrame:
    """One row per market that had orders or fills (columns of :data:`ORDER_STATS_SCHEMA`)."""
    markets = sorted(
        set(intents["market"].to_list())
        | set(order_events["market"].to_list())
        | set(fills["market"].to_list())
    )
    rows = []
    for m in markets:
        mi = intents.filter(pl.col("market") == m)
        me = order_events.filter(pl.col("market") == m)
        mf = fills.filter(pl.col("market") == m)
        if mi.height:
            placed = mi.filter(pl.col("action") == "place")["client_order_id"].n_unique()
        else:
            placed = me["client_order_id"].n_unique()
        cancels = mi.filter(pl.col("action").is_in(["cancel", "cancel_all"])).height
        rejected = me.filter(pl.col("status") == "rejected")["client_order_id"].n_unique()
        filled = mf.filter(pl.col("client_order_id").is_not_null())["client_order_id"].n_unique()
        n_fills = mf.height
        rows.append(
            {
                "market": m,
                "orders_placed": placed,
                "cancels": cancels,
                "rejected": rejected,
                "orders_filled": filled,
                "fills": n_fills,
                "fill_ratio": _ratio(n_fills, placed),
                "filled_order_share": _ratio(filled, placed),
                "order_to_trade": _ratio(placed + cancels, n_fills),
            }
        )
    return pl.DataFrame(rows, schema=ORDER_STATS_SCHEMA, orient="row")
