"""How services and commands reach Kafka: ``makerflow replay`` honours ``MAKERFLOW_BROKERS``,
and a service started with no broker says so once (librdkafka's connect failures silenced),
keeps retrying, and runs once a broker starts at that address."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from makerflow.broker import Broker, free_port
from makerflow.cli import main
from makerflow.kafka_admin import (
    KafkaUnreachable,
    LibrdkafkaLog,
    ensure_topics,
    list_partitions,
    read_topic,
)
from makerflow.schemas.topics import TOPICS
from tests.conftest import FIXTURES, REPO
from tests.processes import kill_if_running

RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def test_librdkafka_log_passes_a_repeated_line_once_a_minute(caplog):
    # confluent-kafka hands over Python levels (it maps librdkafka's syslog ones).
    now = [0.0]
    log = LibrdkafkaLog(every_s=60.0, clock=lambda: now[0])
    fail = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed (after {}ms in state CONNECT)"
    with caplog.at_level("INFO", logger="makerflow.librdkafka"):
        for i in range(100):  # every 50 ms for 5 s, the timing in the text changing
            now[0] = i * 0.05
            log.log(40, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", fail.format(i % 7))
        log.log(20, "%s [%s] %s", "INIT", "rdkafka#consumer-1", "something else")
        now[0] = 61.0
        log.log(40, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", fail.format(3))
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 3, texts
    assert texts[0].startswith("FAIL: 127.0.0.1:1/bootstrap: Connect")
    assert texts[1] == "INIT: something else"
    assert texts[2].endswith("(99 repeats held back)")
    assert [r.levelno for r in caplog.records] == [40, 20, 40]


def test_list_partitions_reports_once_and_gives_up_when_told(caplog):
    port = free_port()
    with (
        caplog.at_level("WARNING", logger="makerflow.kafka_admin"),
        pytest.raises(KafkaUnreachable, match=f"cannot reach Kafka at 127.0.0.1:{port}"),
    ):
        list_partitions(
            [f"127.0.0.1:{port}"], ["md.book"], timeout_s=0.3, retry_s=0.1, give_up_s=1.5
        )
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "start one with `makerflow broker`" in said[0]


@pytest.mark.slow
def test_replay_writes_to_the_brokers_in_MAKERFLOW_BROKERS(
    broker: Broker, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found on main: --brokers defaulted to 127.0.0.1:9092 whatever MAKERFLOW_BROKERS said.
    monkeypatch.setenv("MAKERFLOW_BROKERS", broker.bootstrap)
    book, trades = unique("ops.book"), unique("ops.trades")
    rc = main(["replay", "--input", str(RECORDING), "--book-topic", book, "--trades-topic", trades])
    assert rc == 0
    got = read_topic([broker.bootstrap], trades, idle=2.0)
    assert len(got) > 100


def _spawn_service(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 (closed with the process by the caller)
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", f"makerflow.flows.{module}:flow"],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_service_without_broker_says_so_once_then_runs_when_one_starts(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": bootstrap,
        "MAKERFLOW_TAIL": "0",
        "MAKERFLOW_METRICS_PORT": "0",
    }
    log = tmp_path / "ticks.log"
    proc = _spawn_service("ticks", env, log)
    try:
        deadline = time.monotonic() + 60
        while b"cannot reach Kafka" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(2.0)  # librdkafka would have printed ~40 connect failures by now
        waiting = log.read_text()
        assert proc.poll() is None, waiting  # still waiting, not crashed
        with Broker(port=port, log_path=tmp_path / "tansu.log") as b:
            ensure_topics([b.bootstrap], list(TOPICS))
            rc = proc.wait(timeout=90)
        text = log.read_text()
    finally:
        kill_if_running(proc)
    assert rc == 0, text
    assert text.count(f"cannot reach Kafka at {bootstrap}") == 1, text
    assert "start one with `makerflow broker`" in text
    assert "reached Kafka at" in text
    assert waiting.count("Connect to ipv4") == 0, waiting
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--input", "x.gz"],
        ["record", "--markets", "binance:BTC/USDT"],
        ["topics", "create"],
        ["control", "halt", "--scope", "global"],
    ],
)
def test_every_kafka_command_defaults_to_MAKERFLOW_BROKERS(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from makerflow.cli import build_parser

    monkeypatch.setenv("MAKERFLOW_BROKERS", "kafka-a:9092,kafka-b:9092")
    assert build_parser().parse_args(argv).brokers == "kafka-a:9092,kafka-b:9092"
