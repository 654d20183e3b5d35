"""What keeps a service's resident size flat after it lags (benchmarks/service_memory.py): its
consumers' prefetch bound and batch size, and the heap trimmer every service starts. Checked on
what the flows build and on a real glibc heap, so losing a setting fails here; the RSS itself
is the benchmark's."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.flows import quoter, risk, ticks
from makerflow.flows.common import FlowSettings, check_service_config
from makerflow.heap import ENV, TRIM_EVERY_S, HeapTrimmer, malloc_trim, trim_period
from makerflow.kafka_admin import ensure_topics
from makerflow.operators.quoting_config import QuotingConfig
from makerflow.operators.risk_limits import RiskConfig
from makerflow.sources.kafka import BATCH_SIZE, CONSUMER_MEMORY, LagReportingKafkaSource
from tests.conftest import REPO
from tests.integration.test_kafka_latency_settings import kafka_sources

SETTINGS = FlowSettings(brokers=("127.0.0.1:1",))


def test_every_consumer_of_ticks_risk_and_quoter_bounds_its_prefetch() -> None:
    # librdkafka's defaults let a lagging consumer queue 64 MiB per partition in the heap
    # (measured: 9.4 MiB of md.trades in the ticks service). The batch stays Bytewax's 1000:
    # 100 cost a quarter of the drain rate and most of the scaling (see BATCH_SIZE).
    flows = {
        "ticks": ticks.build_flow(SETTINGS),
        "risk": risk.build_flow(SETTINGS, RiskConfig()),
        "quoter": quoter.build_flow(SETTINGS, QuotingConfig()),
    }
    for name, flow in flows.items():
        sources = list(kafka_sources(flow))
        assert sources, name
        for src in sources:
            config = src.consumer_config()
            assert int(config["queued.max.messages.kbytes"]) <= 256, (name, config)
            assert int(config["max.partition.fetch.bytes"]) <= 256 * 1024, (name, config)
            # With the bound but librdkafka's 1 s backoff, a backlog drained at 0.6x.
            assert int(config["fetch.queue.backoff.ms"]) <= 10, (name, config)
            assert src._batch_size == BATCH_SIZE, (name, src._topics)
    assert int(CONSUMER_MEMORY["queued.max.messages.kbytes"]) <= 256


def test_topics_off_the_fast_path_get_the_bound_too_and_add_config_still_wins() -> None:
    for topic in ("fills", "orders.events", "balances", "control"):
        config = LagReportingKafkaSource(["127.0.0.1:1"], [topic]).consumer_config()
        assert config["queued.max.messages.kbytes"] == CONSUMER_MEMORY["queued.max.messages.kbytes"]
    src = LagReportingKafkaSource(
        ["127.0.0.1:1"], ["ticks"], add_config={"queued.max.messages.kbytes": "4096"}
    )
    assert src.consumer_config()["queued.max.messages.kbytes"] == "4096"


@pytest.mark.slow
def test_a_built_partition_polls_batches_of_the_shipped_size(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    # The size the partition passes to librdkafka's consume, not just the source's field.
    name = unique("mem.batch")
    ensure_topics([broker.bootstrap], [name])
    part = LagReportingKafkaSource([broker.bootstrap], [name]).build_part("mem", f"0-{name}", None)
    try:
        assert part._batch_size == BATCH_SIZE
    finally:
        part.close()


def _rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(malloc_trim() is None, reason="a C library without malloc_trim")
def test_malloc_trim_gives_freed_heap_below_a_live_chunk_back() -> None:
    # 48 MiB in 32 KiB chunks (under the mmap threshold: from the heap), one chunk above them
    # kept alive: free() returns nothing (only the top of a heap goes back), the trim does.
    # On this thread's own arena, so the test process's main heap is left alone.
    trim = malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    seen: dict[str, int] = {}

    def work() -> None:
        chunks = [libc.malloc(32 * 1024) for _ in range(1536)]
        for c in chunks:
            libc.memset(c, 1, 32 * 1024)  # resident, not just reserved
        pin = libc.malloc(32 * 1024)
        seen["filled"] = _rss_anon_kb()
        for c in chunks:
            libc.free(c)
        seen["freed"] = _rss_anon_kb()
        trim()
        seen["trimmed"] = _rss_anon_kb()
        libc.free(pin)

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=30)
    assert seen["freed"] > seen["filled"] - 8 * 1024, seen  # free() kept (nearly) all of it
    assert seen["trimmed"] < seen["freed"] - 32 * 1024, seen  # the trim gave 32+ MiB back


def test_the_trimmer_trims_every_period_and_stops() -> None:
    calls: list[float] = []
    trimmer = HeapTrimmer(0.01, lambda: calls.append(time.monotonic()) or 1)
    trimmer.start()
    deadline = time.monotonic() + 10  # a bound on the test, not a measured time
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    assert len(calls) >= 3 and trimmer.trims == len(calls)
    assert not trimmer.is_alive()


def test_the_trim_period_comes_from_the_environment() -> None:
    assert trim_period({}) == TRIM_EVERY_S
    assert trim_period({ENV: "0"}) == 0.0
    assert trim_period({ENV: "2.5"}) == 2.5
    for bad in ("-1", "often", "nan"):
        with pytest.raises(ValueError, match=ENV):
            trim_period({ENV: bad})
    with pytest.raises(SystemExit):
        check_service_config("ticks", {ENV: "often"})


@pytest.mark.slow
def test_a_service_process_starts_its_heap_trimmer_when_it_builds_its_flow(
    tmp_path: Path,
) -> None:
    # What `python -m bytewax.run makerflow.flows.ticks:flow` does first: access `flow`.
    code = (
        "import threading, makerflow.flows.ticks as m; m.flow; "
        "print(sorted(t.name for t in threading.enumerate()))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW_")}
    env |= {"PYTHONPATH": str(REPO), "MAKERFLOW_BROKERS": "127.0.0.1:1"}
    env |= {"MAKERFLOW_METRICS_PORT": "0", "MAKERFLOW_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "makerflow-malloc-trim" in out.stdout
    off = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {ENV: "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert off.returncode == 0, off.stderr
    assert "makerflow-malloc-trim" not in off.stdout
