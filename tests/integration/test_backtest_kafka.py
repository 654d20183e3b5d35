"""Backtests over recorded Kafka topics on the real broker: bounded by the end offsets of the
start without losing the last batch to tansu's watermark quirk, and replays from a time."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from makerflow.backtest.inputs import KafkaReplaySource, plan_kafka
from makerflow.backtest.run import FileInput, KafkaInput, run_backtest
from makerflow.backtest.settings import load_backtest_config
from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig
from makerflow.schemas.codec import encode
from makerflow.schemas.events import Trade
from makerflow.schemas.topics import MD_BOOK, MD_TRADES, Topic
from makerflow.sinks.jsonl import read_jsonl
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def high_watermark(brokers: list[str], name: str) -> int:
    c = Consumer({"bootstrap.servers": ",".join(brokers), "group.id": "hwm"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)[1])
    finally:
        c.close()


def test_a_replay_of_batched_topics_loses_no_record_of_the_last_batch(
    broker: Broker, unique: Callable[[str], str], tmp_path: Path
) -> None:
    brokers = [broker.bootstrap]
    book = Topic(unique("md.book"), "market", MD_BOOK.value_type)
    trades = Topic(unique("md.trades"), "market", MD_TRADES.value_type)
    ensure_topics(brokers, [book.name, trades.name])
    events = [e for e in read_recorded(SPOT) if not hasattr(e, "step")]
    book_events = [e for e in events if not isinstance(e, Trade)]
    trade_events = [e for e in events if isinstance(e, Trade)]
    # Batched production: tansu's high watermark then reads short of the record count.
    produce_events(brokers, book, book_events, **{"linger.ms": 200})
    produce_events(brokers, trades, trade_events, **{"linger.ms": 200})
    short = high_watermark(brokers, trades.name)
    assert short < len(trade_events), "tansu reports the true end: update the quirk notes"

    cfg = load_backtest_config(None, [("quoting.defaults.warmup_s", 2.0)])
    res = run_backtest(KafkaInput(tuple(brokers), (book, trades)), cfg, tmp_path / "kafka")
    assert res.events == len(events)
    # Two topics consumed at their own pace, on two workers: the same bytes.
    run_backtest(KafkaInput(tuple(brokers), (book, trades)), cfg, tmp_path / "k2", workers=2)
    for f in sorted((tmp_path / "kafka").glob("*.jsonl")):
        assert f.read_bytes() == (tmp_path / "k2" / f.name).read_bytes(), f.name
    # The last record of the last batch reached the engine: the replay ends on the same trade
    # as the file does (the start can differ by a trade: the topics interleave by event time,
    # the file by receive order).
    ref = run_backtest(FileInput((str(SPOT),)), cfg, tmp_path / "file")
    kafka_ticks = read_jsonl(tmp_path / "kafka" / "ticks.jsonl", dict)
    file_ticks = read_jsonl(tmp_path / "file" / "ticks.jsonl", dict)
    trade_ticks = [(x["ts"], x["last_price"]) for x in kafka_ticks if x["reason"] == "trade"]
    file_trades = [(x["ts"], x["last_price"]) for x in file_ticks if x["reason"] == "trade"]
    assert trade_ticks[-1] == file_trades[-1] and len(trade_ticks) >= len(file_trades)
    assert res.figures["fills"] > 0 and ref.figures["fills"] > 0

    # Records produced after the start are not part of a replay planned before them.
    plans = plan_kafka(brokers, [trades.name])
    time.sleep(0.01)
    produce_events(brokers, trades, trade_events[:10])
    reader = KafkaReplaySource(brokers, {trades.name: trades}, plans).build_part(
        "t", plans[0].name, None
    )
    read = 0
    with contextlib.suppress(StopIteration):
        while True:
            read += len(reader.next_batch())
    reader.close()
    assert read == len(trade_events)
    again = run_backtest(KafkaInput(tuple(brokers), (trades,)), cfg, tmp_path / "again")
    assert again.events == len(trade_events) + 10  # a replay planned now sees them


def test_a_replay_from_a_time_starts_at_the_right_offset_on_every_partition(
    broker: Broker, unique: Callable[[str], str], tmp_path: Path
) -> None:
    brokers = [broker.bootstrap]
    topic = Topic(unique("md.trades"), "market", MD_TRADES.value_type)
    ensure_topics(brokers, [topic.name], partitions=2)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"}
    )
    delivered: list[tuple[int, int, int]] = []  # (partition, offset, timestamp ms)
    ids: dict[tuple[int, int], str] = {}  # (partition, offset) -> trade id

    def on_delivery(err: object, msg: object) -> None:
        assert err is None
        m: Any = msg
        delivered.append((m.partition(), m.offset(), m.timestamp()[1]))
        ids[(m.partition(), m.offset())] = json.loads(m.value())["trade_id"]

    markets = ("binance:BTC/USDT", "binance:ETH/USDT", "kraken:BTC/USDT", "okx:BTC/USDT")
    base_ms = 1_723_161_000_000
    for i in range(400):
        key = markets[i % len(markets)]
        venue, symbol = key.split(":")
        tr = Trade(
            ts=(base_ms + i) * 1_000_000,
            venue=venue,
            symbol=symbol,
            trade_id=str(i),
            price=100.0,
            qty=1.0,
            side="buy",
        )
        producer.produce(
            topic.name, encode(tr), key.encode(), timestamp=base_ms + i, on_delivery=on_delivery
        )
    producer.flush(30)
    assert {p for p, _, _ in delivered} == {0, 1}
    start_ms = base_ms + 250
    plans = {p.partition: p for p in plan_kafka(brokers, [topic.name], from_time_ms=start_ms)}
    source = KafkaReplaySource(brokers, {topic.name: topic}, list(plans.values()))
    for part in (0, 1):
        first = min(off for p, off, ts in delivered if p == part and ts >= start_ms)
        # The broker's answer is a lower bound (tansu: the batch's base offset); the reader
        # starts at the first record at or after the time.
        assert plans[part].start <= first
        reader = source.build_part("t", f"{topic.name}#{part}", None)
        got: list[Trade] = []
        while not got:
            got = reader.next_batch()
        reader.close()
        assert got[0].trade_id == ids[(part, first)]
    quoting = QuotingConfig(
        markets=tuple(
            MarketConfig(
                venue=k.split(":")[0], symbol=k.split(":")[1], tick_size=0.01, lot_size=0.001
            )
            for k in markets
        )
    )
    cfg = load_backtest_config(None)
    cfg = type(cfg)(quoting=quoting)
    res = run_backtest(
        KafkaInput(tuple(brokers), (topic,), from_time_ms=start_ms), cfg, tmp_path / "t"
    )
    assert res.events == sum(1 for _, _, ts in delivered if ts >= start_ms)
