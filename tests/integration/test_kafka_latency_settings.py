"""The Kafka settings that decide a service's latency (benchmarks/service_latency.py): what
the flows' consumers are built with and how their partitions poll (and the services' garbage
collector). Checked on what the flows
build, so undoing a setting fails here; the speed itself is the benchmark's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from confluent_kafka import OFFSET_BEGINNING

from makerflow.broker import Broker
from makerflow.flows import ticks
from makerflow.flows.common import FlowSettings
from makerflow.kafka_admin import ensure_topics, produce_raw, read_topic
from makerflow.operators.ticks import TicksConfig, _TicksLogic
from makerflow.schemas.codec import encode
from makerflow.schemas.config import ConfigError
from makerflow.schemas.events import BookSnapshot, DeadLetter, Trade
from makerflow.schemas.markers import CaughtUp
from makerflow.schemas.topics import MD_BOOK, MD_TRADES, TICKS, TOPICS
from makerflow.sources.kafka import (
    CONSUMER_DEFAULTS,
    LagReportingKafkaSource,
    _ConsumeWithoutWaiting,
)
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES, REPO

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def kafka_sources(flow: Dataflow) -> Iterator[LagReportingKafkaSource]:
    def walk(step: object) -> Iterator[Any]:
        for sub in getattr(step, "substeps", []):
            src = getattr(sub, "source", None)
            if isinstance(src, LagReportingKafkaSource):
                yield src
            yield from walk(sub)

    return walk(flow)


def test_the_ticks_service_consumers_wait_at_most_5_ms_for_a_fetch() -> None:
    # tansu answers a waiting fetch only when fetch.wait.max.ms is over: librdkafka's 500 ms
    # default was most of the latency from a book update to an intent.
    flow = ticks.build_flow(FlowSettings(brokers=("127.0.0.1:1",)))
    sources = list(kafka_sources(flow))
    assert len(sources) == 2  # md.book and md.trades
    for src in sources:
        config = src.consumer_config()
        assert int(config["fetch.wait.max.ms"]) <= 5, config
        assert config["fetch.wait.max.ms"] == CONSUMER_DEFAULTS["fetch.wait.max.ms"]


def test_only_the_path_to_an_order_gets_the_short_wait() -> None:
    # Every idle consumer with a short wait costs the broker a fetch per wait: fills, order
    # events, balances and control keep librdkafka's default.
    for topic in ("ticks", "index", "risk.state", "orders.intents"):
        assert (
            LagReportingKafkaSource(["127.0.0.1:1"], [topic]).consumer_config()["fetch.wait.max.ms"]
            == CONSUMER_DEFAULTS["fetch.wait.max.ms"]
        )
    for topic in ("fills", "orders.events", "balances", "control"):
        config = LagReportingKafkaSource(["127.0.0.1:1"], [topic]).consumer_config()
        assert "fetch.wait.max.ms" not in config


def test_a_source_add_config_still_overrides_the_defaults() -> None:
    src = LagReportingKafkaSource(
        ["127.0.0.1:1"], ["ticks"], add_config={"fetch.wait.max.ms": "100"}
    )
    assert src.consumer_config()["fetch.wait.max.ms"] == "100"


@pytest.mark.slow
def test_a_partition_polls_without_waiting_and_still_reads_everything(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    # Bytewax 0.21.1 polls with consume(batch, 0.001): librdkafka waits the whole millisecond
    # unless the batch fills, once per partition per round. The partition's consumer must be
    # the non-waiting one, and must still hand over every message.
    name = unique("lat.poll")
    ensure_topics([broker.bootstrap], [name])
    produce_raw([broker.bootstrap], name, [(b"k", b"%d" % i) for i in range(5)])
    source = LagReportingKafkaSource(
        [broker.bootstrap], [name], tail=False, starting_offset=OFFSET_BEGINNING
    )
    part = source.build_part("lat_step", f"0-{name}", None)
    assert isinstance(part._consumer, _ConsumeWithoutWaiting)
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 15  # a bound on the test, not a measured time
        while time.monotonic() < deadline:
            try:
                got += [m.value for m in part.next_batch()]
            except StopIteration:
                break
    finally:
        part.close()
    assert got == [b"%d" % i for i in range(5)]


def markers_of(flow: Dataflow) -> dict[str, bool]:
    return {s._topics[0]: s.caught_up_markers for s in kafka_sources(flow)}


def test_the_live_ticks_flow_asks_md_book_for_caught_up_markers() -> None:
    # Held trades go when md.book is caught up; book updates keep waiting for the trades
    # (on the recorded Binance data trades arrive up to 166 ms behind later book updates).
    assert markers_of(ticks.build_flow(FlowSettings())) == {"md.book": True, "md.trades": False}
    replay = ticks.build_flow(FlowSettings(tail=False))
    assert markers_of(replay) == {"md.book": False, "md.trades": False}
    for release, want in (
        ("none", (False, False)),
        ("book", (False, True)),
        ("both", (True, True)),
    ):
        flow = ticks.build_flow(FlowSettings(), TicksConfig(release_caught_up=release))
        assert markers_of(flow) == dict(zip(("md.book", "md.trades"), want, strict=True))
    no_merge = ticks.build_flow(FlowSettings(), TicksConfig(align_ms=0))
    assert markers_of(no_merge) == {"md.book": False, "md.trades": False}
    with pytest.raises(ValueError, match="release_caught_up must be one of"):
        TicksConfig(release_caught_up="yes")


@pytest.mark.slow
def test_a_caught_up_partition_marks_each_of_its_keys(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    name = unique("lat.marks")
    ensure_topics([broker.bootstrap], [name])
    sent = [(b"binance:BTC/USDT", b"1"), (b"binance:ETH/USDT", b"2"), (b"binance:BTC/USDT", b"3")]
    produce_raw([broker.bootstrap], name, sent)
    source = LagReportingKafkaSource(
        [broker.bootstrap],
        [name],
        starting_offset=OFFSET_BEGINNING,
        caught_up_markers=True,
        add_config={"fetch.wait.max.ms": "5"},  # a test topic: not a low-latency one
    )
    part = source.build_part("lat_step", f"0-{name}", None)
    assert part.caught_up_every_ns == 6 * 10**6  # one fetch wait + 1 ms
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(type(x) is CaughtUp for x in got):
            got += part.next_batch()
        # Then polls for twenty marker periods more with nothing new anywhere: one more
        # round of markers (what the first released needs one more), then none.
        until = time.monotonic_ns() + 20 * part.caught_up_every_ns
        while time.monotonic_ns() < until:
            got += part.next_batch()
    finally:
        part.close()
    data = [x for x in got if type(x) is not CaughtUp]
    marks = [x for x in got if type(x) is CaughtUp]
    assert [(m.key, m.value) for m in data] == sent  # everything first, then the markers
    assert got[: len(data)] == data
    keys = [("binance:BTC/USDT", name, 0), ("binance:ETH/USDT", name, 0)]
    assert [(m.key, m.topic, m.partition) for m in marks] == keys * 2


def test_the_ticks_step_releases_a_held_update_a_trades_marker_later() -> None:
    # An hour's bound: only the trades partition's markers can release the snapshot's tick.
    snap = next(e for e in read_recorded(SPOT) if isinstance(e, BookSnapshot))
    logic = _TicksLogic("t", TicksConfig(align_ms=3_600_000), True, None, trades_topic="md.trades")
    key = f"{snap.venue}:{snap.symbol}"
    assert logic.on_batch([snap])[0] == []
    assert logic.on_batch([CaughtUp(key, "md.book", 0)] * 2)[0] == []  # the book's own
    assert logic.on_batch([CaughtUp(key, "md.trades", 0)])[0] == []
    out = logic.on_batch([CaughtUp(key, "md.trades", 0)])[0]
    assert [type(x).__name__ for x in out] == ["Tick"]
    assert out[0].ts == snap.ts


def test_the_environment_sets_the_fetch_wait_of_every_consumer() -> None:
    # On Kafka or Redpanda a waiting fetch is answered when data comes: a long wait there
    # costs no latency, and fewer idle fetches.
    settings = FlowSettings.from_env({"MAKERFLOW_KAFKA_FETCH_WAIT_MS": "500"})
    waits = [
        s.consumer_config()["fetch.wait.max.ms"] for s in kafka_sources(ticks.build_flow(settings))
    ]
    assert waits == ["500", "500"]
    for bad in ("0", "fast", "-1"):
        with pytest.raises(ConfigError, match="MAKERFLOW_KAFKA_FETCH_WAIT_MS"):
            FlowSettings.from_env({"MAKERFLOW_KAFKA_FETCH_WAIT_MS": bad})


@pytest.mark.slow
def test_a_live_ticks_service_does_not_hold_a_trade_while_md_book_is_caught_up(
    tmp_path: Path,
) -> None:
    # align_ms of an hour: without md.book's caught-up markers the trade would wait for a
    # later book update or an hour of book time; with them its tick comes out.
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    snap = next(e for e in events if isinstance(e, BookSnapshot))
    trade = next(e for e in events if isinstance(e, Trade) and e.ts > snap.ts)
    log = tmp_path / "ticks.log"
    with Broker() as b:
        ensure_topics([b.bootstrap], list(TOPICS))
        produce_raw([b.bootstrap], MD_BOOK.name, [(MD_BOOK.key_of(snap).encode(), encode(snap))])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW")},
            "PYTHONPATH": str(REPO),
            "MAKERFLOW_BROKERS": b.bootstrap,
            "MAKERFLOW_METRICS_PORT": "0",
            "MAKERFLOW__TICKS__ALIGN_MS": "3600000",
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bytewax.run", "makerflow.flows.ticks:flow"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                # The snapshot waits for md.trades to show a later time: the trade, sent only
                # once the service is serving (its first poll of md.trades found nothing) and
                # md.book has long been quiet, releases it, and is then held for md.book.
                first = read_topic([b.bootstrap], TICKS.name, expected=1, idle=6, timeout=6)
                assert first == [], log.read_text()[-2000:]
                produce_raw(
                    [b.bootstrap],
                    MD_TRADES.name,
                    [(MD_TRADES.key_of(trade).encode(), encode(trade))],
                )
                got = read_topic([b.bootstrap], TICKS.name, expected=2, idle=60, timeout=60)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    ticks_ts = [json.loads(m.value())["ts"] for m in got]
    assert ticks_ts == [snap.ts, trade.ts], log.read_text()[-2000:]


def test_a_service_freezes_its_start_up_heap_out_of_the_garbage_collector() -> None:
    # A full collection walking the start-up heap (~33 000 objects) paused the ticks worker
    # for milliseconds to tens of milliseconds mid-update; frozen, those objects are never
    # walked again. Checked in the process that builds a real service's flow the way
    # ``bytewax.run makerflow.flows.ticks:flow`` does.
    code = (
        "import gc, makerflow.flows.ticks as t; t.flow;"
        " print(gc.get_freeze_count(), sum(gc.get_count()))"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW")},
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_METRICS_PORT": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, pending = map(int, out.stdout.split()[-2:])
    assert frozen > 10_000, out.stdout  # the modules and the flow, not a handful
    assert pending < 1_000  # collected before freezing: no start-up garbage kept
