"""Spread captured and markouts: what each fill earned at once and how the mid moved after it.

For a fill of side sign ``s`` (+1 buy, -1 sell) at price ``p`` with the mid ``m0`` at the fill
(the last tick at or before it) and ``m(h)`` the mid ``h`` seconds later:

* spread captured ``= s * (m0 - p)``: the edge against the mid when the fill happened;
* markout at ``h`` ``= s * (m(h) - m0)``: the signed mid move after the fill. Negative is
  adverse selection: the market moved against the position just taken;
* edge at ``h`` ``= s * (m(h) - p)``: spread captured plus markout, the fill's PnL per unit
  marked ``h`` later.

A horizon past the last tick of the market is unknown (null) and left out of averages.
Averages are weighted by fill quantity; ``_bps`` columns are divided by ``m0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

NS = 1_000_000_000
HEADLINE_HORIZONS_S = (1.0, 10.0, 60.0)
CURVE_HORIZONS_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


def horizon_label(h: float) -> str:
    return f"{h:g}s"


def _mid_at(fills: pl.DataFrame, mids: pl.DataFrame, offset_ns: int, name: str) -> pl.Series:
    """The mid at each fill's time plus ``offset_ns`` (null past the market's last tick)."""
    probe = fills.select("market", (pl.col("ts") + offset_ns).alias("at")).with_row_index("_n")
    got = (
        probe.sort("at")
        .join_asof(
            mids.rename({"ts": "at"}).sort("at"),
            on="at",
            by="market",
            strategy="backward",
            check_sortedness=False,
        )
        .join(
            mids.group_by("market").agg(pl.col("ts").max().alias("_last")),
            on="market",
            how="left",
        )
        .with_columns(pl.when(pl.col("at") <= pl.col("_last")).then(pl.col("mid")).alias(name))
        .sort("_n")
    )
    return got[name]


def fill_markouts(
    fills: pl.DataFrame,
    ticks: pl.DataFrame,
    horizons_s: Sequence[float] = CURVE_HORIZONS_S,
) -> pl.DataFrame:
    """Every fill with ``mid_at_fill``, ``spread_captured`` (price and bps) and, for each
    horizon ``h``, ``markout_<h>``/``markout_<h>_bps`` and ``edge_<h>``."""
    mids = ticks.select("market", "ts", "mid")
    base = fills.select(
        "ts", "market", "trade_id", "side", "price", "qty", "liquidity"
    ).with_columns(sign=pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0))
    m0 = _mid_at(base, mids, 0, "mid_at_fill")
    out = base.with_columns(m0).with_columns(
        spread_captured=pl.col("sign") * (pl.col("mid_at_fill") - pl.col("price"))
    )
    out = out.with_columns(
        spread_captured_bps=pl.col("spread_captured") / pl.col("mid_at_fill") * 1e4
    )
    for h in horizons_s:
        label = horizon_label(h)
        mh = _mid_at(base, mids, round(h * NS), f"mid_{label}")
        move = pl.col("sign") * (pl.col(f"mid_{label}") - pl.col("mid_at_fill"))
        out = out.with_columns(mh).with_columns(
            move.alias(f"markout_{label}"),
            (move / pl.col("mid_at_fill") * 1e4).alias(f"markout_{label}_bps"),
            (pl.col("sign") * (pl.col(f"mid_{label}") - pl.col("price"))).alias(f"edge_{label}"),
        )
    return out


def _wmean(col: str) -> pl.Expr:
    known = pl.col(col).is_not_null()
    weight = pl.when(known).then(pl.col("qty")).otherwise(0.0)
    return (pl.col(col).fill_null(0.0) * weight).sum() / weight.sum()


def markout_curve(
    markouts: pl.DataFrame, horizons_s: Sequence[float] = CURVE_HORIZONS_S
) -> pl.DataFrame:
    """Quantity-weighted mean markout and edge per horizon, per market and side (``all``,
    ``buy``, ``sell``): ``market, side, horizon_s, fills, markout, markout_bps, edge``."""
    rows = []
    for h in horizons_s:
        label = horizon_label(h)
        aggs = [
            pl.col(f"markout_{label}").is_not_null().sum().alias("fills"),
            _wmean(f"markout_{label}").alias("markout"),
            _wmean(f"markout_{label}_bps").alias("markout_bps"),
            _wmean(f"edge_{label}").alias("edge"),
        ]
        for side_df in (
            markouts.group_by("market").agg(aggs).with_columns(side=pl.lit("all")),
            markouts.group_by("market", "side").agg(aggs),
        ):
            rows.append(side_df.with_columns(horizon_s=pl.lit(float(h))))
    if not rows:
        return pl.DataFrame()
    cols = ["market", "side", "horizon_s", "fills", "markout", "markout_bps", "edge"]
    return (
        pl.concat([r.select(cols) for r in rows], how="vertical_relaxed")
        .with_columns(pl.col("fills").cast(pl.Int64))
        .sort("market", "side", "horizon_s")
    )
