"""The tansu broker the demo and the tests run on, its known quirk, and the commands around it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Consumer, TopicPartition

from makerflow.broker import Broker, free_port, wait_for_port
from makerflow.cli import main
from makerflow.kafka_admin import (
    TopicReader,
    ensure_topics,
    list_topics,
    produce_events,
    read_topic,
)
from makerflow.schemas.events import Trade
from makerflow.schemas.topics import MD_BOOK, TOPICS, Topic
from makerflow.sources.kafka import kafka_input
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow


def trades(n: int) -> list[Trade]:
    return [
        Trade(
            ts=i,
            venue="binance",
            symbol="BTC/USDT",
            trade_id=str(i),
            price=1.0,
            qty=1.0,
            side="buy",
        )
        for i in range(n)
    ]


def high_watermark(brokers: list[str], name: str) -> int:
    c = Consumer({"bootstrap.servers": ",".join(brokers), "group.id": "hwm"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)[1])
    finally:
        c.close()


def test_broker_starts_on_a_free_port_and_stops() -> None:
    with Broker() as b:
        assert b.port > 0
        wait_for_port(b.host, b.port, timeout=1)
        ensure_topics([b.bootstrap], ["hello"])
        assert "hello" in list_topics([b.bootstrap])
    with pytest.raises(TimeoutError):
        wait_for_port(b.host, b.port, timeout=0.5)


def test_broker_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="already in use"), Broker(port=port):
            pass
        assert time.monotonic() - started < 5


def test_batched_records_are_all_read_despite_the_high_watermark(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    # tansu's high watermark is the last batch's base offset + 1: with batched production it
    # can fall short of the record count. Readers must still see every record.
    brokers = [broker.bootstrap]
    topic = Topic(unique("hwm"), "market", Trade)
    ensure_topics(brokers, [topic.name])
    sent = trades(5_000)
    produce_events(brokers, topic, sent, **{"linger.ms": 50})
    hwm = high_watermark(brokers, topic.name)
    assert hwm < len(sent), (
        "tansu reports the true end now: update the quirk notes in makerflow.broker"
    )

    assert len(read_topic(brokers, topic.name, expected=len(sent), timeout=30)) == len(sent)
    # Read to the end: the end is the short watermark, and the fetch crossing it brings the rest.
    assert len(read_topic(brokers, topic.name, idle=0, timeout=30)) == len(sent)
    flow = Dataflow("hwm_read")
    got: list[Trade] = []
    streams = kafka_input("in", flow, brokers=brokers, topic=topic, tail=False)
    op.output("out", streams.oks, TestingSink(got))
    run_main(flow)
    assert got == sent


def test_reading_to_the_end_waits_out_a_stalled_broker_and_reads_every_partition(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    """No idle time counts before every partition has been read to its end: a first fetch
    can take longer than the idle time (a fresh consumer on a busy machine; here the broker
    is stopped for 1.5 s), and no answer then is not an empty topic."""
    brokers = [broker.bootstrap]
    topic = Topic(unique("to_end"), "market", Trade)
    ensure_topics(brokers, [topic.name], partitions=4)
    sent = [
        Trade(ts=i, venue="v", symbol=f"S{i % 8}/USDT", trade_id=str(i), price=1, qty=1, side="buy")
        for i in range(400)
    ]
    produce_events(brokers, topic, sent)
    got: list[list[object]] = []
    with TopicReader(brokers, topic.name) as reader:
        assert reader.partitions == [0, 1, 2, 3]
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            th = threading.Thread(target=lambda: got.append(reader.read(idle=0.3, timeout=30)))
            th.start()
            time.sleep(1.5)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        th.join(timeout=40)
    assert len(got[0]) == len(sent)
    assert len(read_topic(brokers, topic.name, idle=0, timeout=30)) == len(sent)
    empty = unique("empty")
    ensure_topics(brokers, [empty], partitions=2)
    assert read_topic(brokers, empty, idle=0, timeout=30) == []


def test_topics_create_and_list(broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    brokers = broker.bootstrap
    assert main(["topics", "create", "--brokers", brokers, "--partitions", "2", MD_BOOK.name]) == 0
    assert f"{MD_BOOK.name}: " in capsys.readouterr().out
    assert list_topics([brokers])[MD_BOOK.name] == 2

    assert main(["topics", "create", "--brokers", brokers]) == 0
    out = capsys.readouterr().out
    assert f"{MD_BOOK.name}: exists" in out
    assert set(TOPICS) <= set(list_topics([brokers]))

    assert main(["topics", "list", "--brokers", brokers]) == 0
    listing = capsys.readouterr().out
    for name in TOPICS:
        assert name in listing
    assert "BookSnapshot | BookDelta" in listing
    assert "missing" not in listing


def test_topics_create_refuses_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "create", "--brokers", "127.0.0.1:1", "md.bok"]) == 2
    assert "known topics" in capsys.readouterr().err


def test_topics_list_without_a_broker_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "--offline"]) == 0
    assert "md.trades" in capsys.readouterr().out
    dead = f"127.0.0.1:{free_port()}"
    assert main(["topics", "list", "--brokers", dead, "--timeout", "1"]) == 1
    assert "did not answer" in capsys.readouterr().out


def test_broker_command_serves_until_terminated() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "makerflow.cli", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        ensure_topics([f"127.0.0.1:{port}"], ["from.cli"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.read().decode()
    finally:
        kill_if_running(proc)
