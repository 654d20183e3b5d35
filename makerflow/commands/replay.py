"""``makerflow replay``: a recorded file -> ``md.book`` / ``md.trades`` on Kafka.

For backtests and the demo: the recorded-file source (any format it reads), normalized to
BookSnapshot / BookDelta / Trade and keyed by ``venue:symbol``; unreadable lines go to the
dead-letter topic. ``--speed`` paces the replay against recorded time (default: as fast as
possible).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from makerflow.kafka_admin import ensure_topics
from makerflow.schemas import topics as t
from makerflow.schemas.events import Trade
from makerflow.sinks.kafka import dead_letter_output, kafka_output
from makerflow.sources.recorded import recorded_input


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="replay recorded market data to md.book / md.trades on Kafka"
    )
    p.add_argument("--input", required=True, nargs="+", help="recorded file(s) or directories")
    p.add_argument(
        "--brokers",
        default=os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers, comma-separated (default: $MAKERFLOW_BROKERS or"
        " 127.0.0.1:9092)",
    )
    p.add_argument("--speed", type=float, help="times recorded speed (default: max speed)")
    p.add_argument("--venue", help="rename the venue (ccxt exchange id) of the input")
    p.add_argument("--symbol", help="rename the symbol (ccxt unified symbol) of the input")
    p.add_argument("--book-topic", default=t.MD_BOOK.name)
    p.add_argument("--trades-topic", default=t.MD_TRADES.name)
    p.add_argument("--partitions", type=int, default=1, help="partitions of topics it creates")
    p.set_defaults(func=run)


def build_replay_flow(
    inputs: Any,
    brokers: list[str],
    *,
    book_topic: str = t.MD_BOOK.name,
    trades_topic: str = t.MD_TRADES.name,
    venue: str | None = None,
    symbol: str | None = None,
    speed: float | None = None,
) -> Dataflow:
    """Recorded files -> the book and trades topics (and dead letters)."""
    flow = Dataflow("replay")
    md = recorded_input("recorded", flow, inputs, venue=venue, symbol=symbol, speed=speed)
    split = op.branch("split", md.oks, lambda e: not isinstance(e, Trade))
    book: t.Topic[Any] = t.Topic(book_topic, "market", t.MD_BOOK.value_type)
    trades: t.Topic[Any] = t.Topic(trades_topic, "market", t.MD_TRADES.value_type)
    kafka_output("out_book", split.trues, brokers=brokers, topic=book)
    kafka_output("out_trades", split.falses, brokers=brokers, topic=trades)
    dead_letter_output("out_deadletter", md.errs, brokers=brokers)
    return flow


def run(args: argparse.Namespace) -> int:
    brokers = [b for b in args.brokers.split(",") if b]
    names = [args.book_topic, args.trades_topic, t.DEAD_LETTERS.name]
    ensure_topics(brokers, names, partitions=args.partitions)
    flow = build_replay_flow(
        args.input,
        brokers,
        book_topic=args.book_topic,
        trades_topic=args.trades_topic,
        venue=args.venue,
        symbol=args.symbol,
        speed=args.speed,
    )
    run_main(flow)
    print(f"replayed {' '.join(args.input)} to {args.book_topic}, {args.trades_topic}")
    return 0
