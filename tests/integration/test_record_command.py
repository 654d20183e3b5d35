"""``makerflow record``: live public books and trades through the unmodified ccxt pro client
(here from the local exchange's public websocket streams) to Kafka or a JSONL file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.cli import main
from makerflow.demo.runner import ccxt_public_config
from makerflow.exchange.local import LocalExchange
from makerflow.kafka_admin import read_topic
from makerflow.operators.market_ticks import MarketTicks
from makerflow.operators.ticks import TicksConfig
from makerflow.schemas import topics as t
from makerflow.schemas.events import BookDelta, BookSnapshot, Tick, Trade
from makerflow.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def _exchange_config(url: str) -> str:
    return json.dumps(ccxt_public_config(url).exchange_config)


def _check_market_data(events: list[BookSnapshot | BookDelta | Trade]) -> None:
    books = [e for e in events if not isinstance(e, Trade)]
    assert isinstance(books[0], BookSnapshot)
    assert all(isinstance(b, BookDelta) for b in books[1:])
    assert all(e.venue == "binance" and e.symbol == "BTC/USDT" for e in events)
    # A consistent book: the ticks logic accepts every update, finds no gap, never crosses.
    market = MarketTicks("binance", "BTC/USDT", TicksConfig())
    out = [o for e in events for o in market.on_event(e)]
    ticks = [o for o in out if isinstance(o, Tick)]
    assert ticks and all(k.bid < k.ask for k in ticks)
    assert market.quality_counts().get("gap", 0) == 0


def test_record_to_kafka(broker: Broker, unique: Callable[[str], str]) -> None:
    book_topic, trades_topic = unique("rec.book"), unique("rec.trades")
    with LocalExchange(speed=2.0) as ex:
        rc = main(
            [
                "record",
                "--markets",
                "binance:BTC/USDT",
                "--brokers",
                broker.bootstrap,
                "--exchange-config",
                _exchange_config(ex.url),
                "--max-events",
                "60",
                "--book-topic",
                book_topic,
                "--trades-topic",
                trades_topic,
            ]
        )
    assert rc == 0
    books = [t.MD_BOOK.codec.decode(m.value()) for m in read_topic([broker.bootstrap], book_topic)]
    trades = [
        t.MD_TRADES.codec.decode(m.value()) for m in read_topic([broker.bootstrap], trades_topic)
    ]
    assert len(books) + len(trades) == 60
    assert all(isinstance(e, Trade) and e.price > 0 and e.qty > 0 for e in trades)
    # Each topic keeps the market's order; the book topic alone replays to a valid book.
    _check_market_data(books)


def test_record_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "md.jsonl"
    with LocalExchange(speed=2.0) as ex:
        rc = main(
            [
                "record",
                "--markets",
                "binance:BTC/USDT",
                "--exchange-config",
                _exchange_config(ex.url),
                "--max-events",
                "40",
                "--output",
                str(out),
            ]
        )
    assert rc == 0
    events = read_jsonl(out, BookSnapshot | BookDelta | Trade)
    assert len(events) == 40
    _check_market_data(events)
