"""kill -9 of the ticks service under ``makerflow run --recovery``: nothing lost, and the only
repeats are the replayed epoch's, identical to what was emitted the first time.

Two fresh brokers on loopback get the same recorded BTC/USDT data (Binance spot, 53 s) in
``md.book`` / ``md.trades`` through ``makerflow replay``: on one, an uninterrupted run of the
service gives the reference ticks; on the other the recording is replayed in real time (x4)
while the service runs with recovery, is SIGKILLed mid-stream, and restarted on the same
recovery directory. Event-time alignment (``MAKERFLOW__TICKS__ALIGN_MS``, above the
recording's span) makes the ticks independent of how the two topics interleave, so the runs
can be compared message by message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.schemas.topics import TICKS, TOPICS
from tests.conftest import FIXTURES, REPO
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow

RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
KILL_AFTER = 500  # ticks; the recording makes 1558


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    with (
        Broker(log_path=tmp_path / "ref.log") as ref,
        Broker(log_path=tmp_path / "crash.log") as crash,
    ):
        for b in (ref, crash):
            ensure_topics([b.bootstrap], list(TOPICS))
        yield ref, crash


def service_env(brokers: str, tail: bool) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": brokers,
        "MAKERFLOW_TAIL": "1" if tail else "0",
        "MAKERFLOW_METRICS_PORT": "0",
        "MAKERFLOW__TICKS__ALIGN_MS": "120000",
    }


def makerflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "makerflow.cli", *args]


def replay(brokers: str, speed: float | None = None) -> subprocess.Popen[bytes]:
    extra = ["--speed", str(speed)] if speed else []
    return subprocess.Popen(
        makerflow("replay", "--input", str(RECORDING), "--brokers", brokers, *extra),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def values(brokers: str, idle: float = 1.5) -> list[bytes]:
    # Read until the topic has been quiet a while: its reported end is short on tansu. Only
    # read once the service has exited (or been killed): every tick is then on the broker.
    return [bytes(m.value()) for m in read_topic([brokers], TICKS.name, idle=idle)]


def start_ticks(brokers: str, recovery: Path, log: Path, tail: bool) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it; closed when the test ends)
    return subprocess.Popen(
        makerflow("run", "ticks", "--recovery", str(recovery), "--snapshot-s", "1"),
        cwd=REPO,
        env=service_env(brokers, tail),
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def test_kill_9_loses_no_tick_and_repeats_only_the_replayed_epoch(
    two_brokers: tuple[Broker, Broker], tmp_path: Path
) -> None:
    ref_broker, crash_broker = (b.bootstrap for b in two_brokers)

    # The reference (the whole recording, then one uninterrupted run to the end of the
    # topics) is made on its own broker while the crash run goes on: the crash feed is paced,
    # so the two share the machine; the kill comes after a fixed count of ticks (about a third
    # of the reference's, which the recording fixes).
    ref_feed = replay(ref_broker)
    ref_run: subprocess.Popen[bytes] | None = None

    # The crash: the recording arrives in real time (x4, about 13 s) while the service runs.
    recovery = tmp_path / "recovery"
    log = tmp_path / "crash.log"
    first = start_ticks(crash_broker, recovery, log, True)
    feed: subprocess.Popen[bytes] | None = None
    try:
        # The feed starts once the service is up: a fast feed is then still going on when
        # the service is a third of the way through.
        deadline = time.monotonic() + 60
        while "serving Prometheus metrics on" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        feed = replay(crash_broker, speed=4.0)
        # Returns as soon as KILL_AFTER ticks are out (the topic never idles meanwhile).
        part = read_topic([crash_broker], TICKS.name, expected=KILL_AFTER, timeout=120)
        assert len(part) >= KILL_AFTER, log.read_text()
        assert first.poll() is None, log.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert feed.poll() is None, "the replay ended before the kill: not mid-stream"
        before_restart = values(crash_broker)
        assert ref_feed.wait(timeout=120) == 0
        ref_run = start_ticks(ref_broker, tmp_path / "ref-recovery", tmp_path / "ref.log", False)
        assert feed.wait(timeout=120) == 0
        # Restarted on the same store, to the end of the topics.
        second = start_ticks(crash_broker, recovery, log, False)
        assert second.wait(timeout=180) == 0, log.read_text()
        assert ref_run.wait(timeout=180) == 0, (tmp_path / "ref.log").read_text()
    finally:
        for p in (first, feed, ref_feed, ref_run):
            kill_if_running(p)
    reference = values(ref_broker)
    assert len(reference) > 3 * KILL_AFTER
    got = values(crash_broker)
    text = log.read_text()
    assert "created recovery store" in text and "resuming ticks from recovery store" in text

    k = len(before_restart)
    assert 0 < k < len(reference)
    # Before the kill: exactly the reference's first k ticks.
    assert got[:k] == reference[:k]
    # After the restart: the reference from where the last snapshot was, to its end; the
    # overlap is the replayed epoch, emitted again with the same content.
    resumed = got[k:]
    j = len(reference) - len(resumed)
    assert 0 <= j <= k, f"{len(reference) - len(got)} ticks lost"
    assert resumed == reference[j:]
    repeated = k - j
    # Resumed from a snapshot taken a second or so before the kill, not from the beginning
    # (which a restart without recovery does: every tick made so far, again).
    assert j > 0, "the restart began again from the first tick"
    assert repeated <= k // 2, f"{repeated} of {k} ticks emitted again"
    print(f"kill -9 after {k} of {len(reference)} ticks: {repeated} repeated, none lost")
