"""The streams of a run as typed polars frames, deduplicated and in event-time order.

A run directory holds one JSON-lines file per stream, one encoded event per line, as the demo
and ``makerflow backtest`` write them: ``ticks.jsonl`` (Tick), ``fills.jsonl`` (Fill),
``order_events.jsonl`` (OrderEvent), ``intents.jsonl`` (OrderIntent), ``ladders.jsonl``
(QuoteLadder; ``quotes.jsonl`` is read as well), ``executions.jsonl`` (the exchange sink's
OrderEvents: its acks and rejects, read with the venue's order events) and the others, which
the report ignores.

Delivery is at least once, so every normaliser drops what was delivered twice: a fill by its
``(venue, symbol, account, trade_id)``, an order by its client id, any other event when it is
identical to one already seen. Order on disk never matters: frames are sorted by event time
with a stable tie-break.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

STREAMS = ("ticks", "fills", "order_events", "executions", "intents", "ladders")
_ALIASES = {"ladders": ("ladders", "quotes")}

FILL_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "venue": pl.String,
    "symbol": pl.String,
    "account": pl.String,
    "trade_id": pl.String,
    "client_order_id": pl.String,
    "side": pl.String,
    "price": pl.Float64,
    "qty": pl.Float64,
    "fee": pl.Float64,
    "fee_asset": pl.String,
    "liquidity": pl.String,
}
TICK_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "venue": pl.String,
    "symbol": pl.String,
    "bid": pl.Float64,
    "ask": pl.Float64,
    "mid": pl.Float64,
}
INTENT_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "venue": pl.String,
    "symbol": pl.String,
    "account": pl.String,
    "action": pl.String,
    "client_order_id": pl.String,
    "side": pl.String,
    "price": pl.Float64,
    "qty": pl.Float64,
}
ORDER_EVENT_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "venue": pl.String,
    "symbol": pl.String,
    "account": pl.String,
    "client_order_id": pl.String,
    "status": pl.String,
    "side": pl.String,
    "price": pl.Float64,
    "qty": pl.Float64,
    "filled_qty": pl.Float64,
}
QUOTE_SCHEMA: dict[str, Any] = {
    "ts": pl.Int64,
    "venue": pl.String,
    "symbol": pl.String,
    "reservation": pl.Float64,
    "half_spread": pl.Float64,
    "bid": pl.Float64,
    "ask": pl.Float64,
}
_DEFAULTS: dict[str, Any] = {"account": "main", "fee": 0.0, "fee_asset": "", "liquidity": "maker"}


def _conform(df: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    """``df`` with exactly ``schema``'s columns and types; absent optional columns get their
    event default (or null)."""
    cols = []
    for name, dtype in schema.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype, strict=False))
        else:
            cols.append(pl.lit(_DEFAULTS.get(name), dtype=dtype).alias(name))
    if not df.columns:
        return pl.DataFrame(schema=schema)
    return df.select(cols)


def _with_market(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.concat_str("venue", pl.lit(":"), "symbol").alias("market"))


def fills_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Fills once each (by venue, symbol, account and trade id), oldest first."""
    df = _conform(raw, FILL_SCHEMA).with_columns(
        pl.col("fee").fill_null(0.0), pl.col("fee_asset").fill_null("")
    )
    df = df.sort("ts", "trade_id").unique(
        ["venue", "symbol", "account", "trade_id"], keep="first", maintain_order=True
    )
    return _with_market(df)


def ticks_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Ticks with a mid, duplicates dropped, oldest first."""
    df = _conform(raw, TICK_SCHEMA).filter(pl.col("mid").is_not_null())
    df = df.unique(maintain_order=False).sort("ts", "venue", "symbol", "mid", "bid", "ask")
    return _with_market(df)


def intents_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Intents, a place once per client order id and identical redeliveries once."""
    df = _conform(raw, INTENT_SCHEMA).unique(maintain_order=False)
    places = df.filter(pl.col("action") == "place").sort("ts", "client_order_id")
    places = places.unique(["client_order_id"], keep="first", maintain_order=True)
    others = df.filter(pl.col("action") != "place")
    out = pl.concat([places, others]).sort("ts", "action", "client_order_id", nulls_last=True)
    return _with_market(out)


def order_events_frame(raw: pl.DataFrame) -> pl.DataFrame:
    df = _conform(raw, ORDER_EVENT_SCHEMA).unique(maintain_order=False)
    return _with_market(df.sort("ts", "client_order_id", "status", "filled_qty"))


def _best(col: str, best: str) -> pl.Expr:
    prices = pl.col(col).list.eval(pl.element().struct.field("price"))
    return (prices.list.max() if best == "max" else prices.list.min()).alias(
        "bid" if col == "bids" else "ask"
    )


def quotes_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Our best quoted bid and ask over time, from the quoter's ladders (null: no quote)."""
    if not raw.columns:
        return _with_market(pl.DataFrame(schema=QUOTE_SCHEMA))
    levels = []
    for col, best in (("bids", "max"), ("asks", "min")):
        dtype = raw.schema.get(col)
        inner = getattr(dtype, "inner", None)
        if isinstance(inner, pl.Struct) and "price" in {f.name for f in inner.fields}:
            levels.append(_best(col, best))
        else:  # absent, or every ladder empty on that side: no quote
            levels.append(pl.lit(None, dtype=pl.Float64).alias("bid" if col == "bids" else "ask"))
    df = _conform(raw.with_columns(levels), QUOTE_SCHEMA).unique(maintain_order=False)
    return _with_market(df.sort("ts", "venue", "symbol", "reservation", nulls_last=True))


_NORMALISERS = {
    "ticks": ticks_frame,
    "fills": fills_frame,
    "order_events": order_events_frame,
    "intents": intents_frame,
    "ladders": quotes_frame,
}


def normalise(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Every stream the report reads, typed and deduplicated (absent streams: empty).

    The sink's executions and the venue's order events are one stream of OrderEvents here: a
    reject the sink saw locally is as much a reject as one the venue sent."""
    raw = dict(frames)
    orders = [
        _conform(raw.get(n, pl.DataFrame()), ORDER_EVENT_SCHEMA)
        for n in ("order_events", "executions")
    ]
    raw["order_events"] = pl.concat(orders)
    return {name: fn(raw.get(name, pl.DataFrame())) for name, fn in _NORMALISERS.items()}


def read_stream(run_dir: Path, name: str) -> pl.DataFrame:
    """One stream's events as read from ``run_dir/<name>.jsonl`` (empty if absent)."""
    for alias in _ALIASES.get(name, (name,)):
        path = run_dir / f"{alias}.jsonl"
        if path.exists() and path.stat().st_size > 0:
            return pl.read_ndjson(path, infer_schema_length=None)
    return pl.DataFrame()


def load_run(run_dir: Path) -> dict[str, pl.DataFrame]:
    """The raw frames of the streams the report reads, from a run directory."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory {run_dir}: pass the --out of a demo or backtest")
    frames = {name: read_stream(run_dir, name) for name in STREAMS}
    log.info("run %s: %s", run_dir, {n: f.height for n, f in frames.items()})
    return frames
