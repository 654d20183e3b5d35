"""``makerflow record``: live public books and trades (ccxt pro) -> ``md.book`` / ``md.trades``
on Kafka, or to a JSONL file of events (which ``makerflow replay`` and ``makerflow ticks``
read back)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

from makerflow.kafka_admin import ensure_topics
from makerflow.schemas import topics as t
from makerflow.schemas.events import Trade
from makerflow.sinks.jsonl import jsonl_output
from makerflow.sinks.kafka import kafka_output
from makerflow.sources.ccxt_public import CcxtMarketsConfig, ccxt_public_input, markets_of


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "record", help="record live public books and trades (ccxt pro) to Kafka or a file"
    )
    p.add_argument(
        "--markets",
        required=True,
        nargs="+",
        help="venue:symbol keys with ccxt ids and unified symbols (binance:BTC/USDT)",
    )
    p.add_argument(
        "--brokers",
        default=os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers, comma-separated (default: $MAKERFLOW_BROKERS or"
        " 127.0.0.1:9092)",
    )
    p.add_argument("--output", help="write events to this JSONL file instead of Kafka")
    p.add_argument("--depth", type=int, default=50, help="book levels per side (default 50)")
    p.add_argument("--max-events", type=int, help="stop each market after this many events")
    p.add_argument(
        "--exchange-config",
        default="{}",
        help='JSON of ccxt options per venue, e.g. {"binance": {"urls": ...}}',
    )
    p.add_argument("--book-topic", default=t.MD_BOOK.name)
    p.add_argument("--trades-topic", default=t.MD_TRADES.name)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=run)


def build_record_flow(
    config: CcxtMarketsConfig,
    *,
    brokers: list[str] | None = None,
    output: str | None = None,
    book_topic: str = t.MD_BOOK.name,
    trades_topic: str = t.MD_TRADES.name,
) -> Dataflow:
    """Live ccxt market data -> Kafka topics (or a JSONL file when ``output`` is set)."""
    flow = Dataflow("record")
    md = ccxt_public_input("ccxt", flow, config)
    if output is not None:
        jsonl_output("out_file", md, output)
        return flow
    split = op.branch("split", md, lambda e: not isinstance(e, Trade))
    book: t.Topic[Any] = t.Topic(book_topic, "market", t.MD_BOOK.value_type)
    trades: t.Topic[Any] = t.Topic(trades_topic, "market", t.MD_TRADES.value_type)
    kafka_output("out_book", split.trues, brokers=brokers or [], topic=book)
    kafka_output("out_trades", split.falses, brokers=brokers or [], topic=trades)
    return flow


def run(args: argparse.Namespace) -> int:
    config = CcxtMarketsConfig(
        markets=markets_of(args.markets),
        exchange_config=json.loads(args.exchange_config),
        depth=args.depth,
        max_events=args.max_events,
    )
    brokers = [b for b in args.brokers.split(",") if b]
    if args.output is None:
        ensure_topics(brokers, [args.book_topic, args.trades_topic])
    flow = build_record_flow(
        config,
        brokers=brokers,
        output=args.output,
        book_topic=args.book_topic,
        trades_topic=args.trades_topic,
    )
    if args.workers > 1:
        cluster_main(flow, [], 0, worker_count_per_proc=args.workers)
    else:
        run_main(flow)
    return 0
