"""The execution start waits for the intents from before its run by the intents topic's own
word: every partition, read to the end the broker reported, marks each market once.

A market's orders the venue lists that no intent read so far placed are orphans, and are
cancelled; so the start must not judge before the intents that may have placed them are
in. A timer ("none came for a while") misjudges a topic that comes in bursts; a marker from
each partition, a partition without a single intent of the market included, does not.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import OFFSET_BEGINNING

from makerflow.broker import Broker
from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.kafka_admin import ensure_topics, produce_events, produce_raw, read_topic
from makerflow.schemas.events import Alert, OrderIntent
from makerflow.schemas.markers import CaughtUp, InputEnded
from makerflow.schemas.topics import DEAD_LETTERS
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig
from makerflow.sinks.exchange_start import MarketStart
from makerflow.sinks.exchange_step import ExecuteLogic, LazyRunner
from makerflow.sources.kafka import LagReportingKafkaSource
from tests.conftest import FIXTURES, REPO
from tests.integration.execution_topics_flow import rest, service_env, topics_for
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow

BTC, ETH = "binance:BTC/USDT", "binance:ETH/USDT"
TOPIC = "orders.intents"
NS = 1_000_000_000
REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)


def _poll(parts: list[Any], seconds: float) -> list[list[Any]]:
    """What each partition gives for ``seconds``, or until every one has ended."""
    got: list[list[Any]] = [[] for _ in parts]
    ended: set[int] = set()
    until = time.monotonic() + seconds
    while time.monotonic() < until and len(ended) < len(parts):
        for i, part in enumerate(parts):
            if i not in ended:
                try:
                    got[i] += part.next_batch()
                except StopIteration:
                    ended.add(i)
        time.sleep(0.001)
    return got


@pytest.mark.parametrize("tail", [True, False], ids=["live", "bounded"])
def test_every_partition_marks_the_markets_once_even_one_without_their_messages(
    broker: Broker, unique: Callable[[str], str], tail: bool
) -> None:
    name = unique("intents.marks")
    ensure_topics([broker.bootstrap], [name], partitions=2)
    sent = [(BTC.encode(), b"1"), (BTC.encode(), b"2")]
    produce_raw([broker.bootstrap], name, sent, partitioner="murmur2_random")
    source = LagReportingKafkaSource(
        [broker.bootstrap],
        [name],
        tail=tail,
        starting_offset=OFFSET_BEGINNING,
        caught_up_markers=True,
        mark_keys=(BTC, ETH),
        caught_up_once=True,
        add_config={"fetch.wait.max.ms": "5"},
    )
    source.list_parts()  # as every worker does first: the partition count
    parts = [source.build_part("s", f"{i}-{name}", None) for i in range(2)]
    try:
        got = _poll(parts, 3.0)
    finally:
        for p in parts:
            p.close()
    data = [[x for x in g if type(x) is not CaughtUp] for g in got]
    assert sorted(len(d) for d in data) == [0, 2], "both messages on one partition"
    for i, g in enumerate(got):
        marks = [x for x in g if type(x) is CaughtUp]
        # Once, after the partition's messages, for both markets, with the topic's size.
        assert marks == [CaughtUp(k, name, i, 2) for k in (BTC, ETH)]
        assert g[: len(data[i])] == data[i]


def test_a_bounded_partition_that_ends_in_the_poll_of_its_last_messages_still_marks(
    broker: Broker, unique: Callable[[str], str]
) -> None:
    # The partition-EOF event can come with the last messages: no empty poll is left to
    # send the markers from, so the end itself sends them, before the end marker.
    name = unique("intents.eof")
    ensure_topics([broker.bootstrap], [name])
    source = LagReportingKafkaSource(
        [broker.bootstrap],
        [name],
        tail=False,
        caught_up_markers=True,
        mark_keys=(BTC,),
        caught_up_once=True,
    )
    source.end_markers = True
    source.list_parts()
    part = source.build_part("s", f"0-{name}", None)
    try:
        part._eof = True  # what the connector sets on librdkafka's partition EOF
        assert part.next_batch() == [CaughtUp(BTC, name, 0, 1), InputEnded(name, 0, 1)]
        with pytest.raises(StopIteration):
            part.next_batch()
    finally:
        part.close()


class Clock:
    """The step's wall clock, moved by the test (a pause without waiting for it)."""

    def __init__(self) -> None:
        self.ns = time.time_ns()

    def __call__(self) -> int:
        return self.ns


def _until(logic: ExecuteLogic, done: Callable[[], bool], out: list[Any]) -> None:
    deadline = time.monotonic() + 15
    while not done():
        assert time.monotonic() < deadline, "the venue did not answer in time"
        out += logic.on_notify()
        time.sleep(0.01)


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "another-market-marked"])
def test_a_pause_in_the_intents_does_not_end_the_start_the_markers_of_every_partition_do(
    marked: bool,
) -> None:
    """The run before placed ``mf-a``, which rests on the venue. After a restart its intent
    comes only after a pause longer than ``start_settle_ms`` (the topic in bursts). Judged
    at the pause, ``mf-a`` would be an orphan and cancelled; the start waits for every
    partition's marker instead, and ``mf-a`` is left alone and not placed again. A market
    the markers do not cover (only ``ETH`` marked) still ends its start at a pause."""
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        asyncio.run(_rest_on_venue(ex, "mf-a"))
        clock = Clock()
        config = ExchangeSinkConfig(url=ex.url, rate_limit_ms=1, intent_ttl_ms=None)
        lazy = LazyRunner(config, CREDS, clock, None)
        covered = frozenset([BTC if marked else ETH])
        logic = ExecuteLogic("start", config, lazy, clock, None, marked=covered)
        before = clock.ns - 60 * NS
        out: list[Any] = list(logic.on_batch([MarketStart(BTC), _rest("mf-b", before)]))
        _until(logic, lambda: logic.start_status is not None, out)
        clock.ns += 10 * config.start_settle_ms * 1_000_000  # the pause
        out += logic.on_notify()
        if not marked:
            assert not logic.syncing, "without markers a pause ends the start"
            logic.on_eof()
            return
        assert logic.syncing, "a pause is not the end of the intents from before this run"
        out += logic.on_batch([_rest("mf-a", before + NS), CaughtUp(BTC, TOPIC, 0, 2)])
        assert logic.syncing, "one partition of two read"
        out += logic.on_batch([CaughtUp(BTC, TOPIC, 1, 2)])
        assert not logic.syncing
        out += logic.on_eof()
        assert not [a for a in out if isinstance(a, Alert) and a.name == "OrphanOrder"]
        orders = ex.call(
            lambda s: [
                (o.client_order_id, o.status) for o in s.engine.all_orders("main", "BTCUSDT")
            ]
        )
        assert sorted(orders) == [("mf-a", "NEW"), ("mf-b", "NEW")]


async def _rest_on_venue(ex: LocalExchange, cid: str) -> None:
    """``cid`` resting on the venue, as the run before left it."""
    client = ex.client()
    try:
        await client.load_markets()
        await client.create_order("BTC/USDT", "limit", "buy", 0.001, 61_000, {"clientOrderId": cid})
    finally:
        await client.close()


def _rest(cid: str, ts: int) -> OrderIntent:
    """The resting buy of ``cid``, as an intent stamped ``ts``."""
    return msgspec.structs.replace(rest(cid), ts=ts)


SERVICE_CONFIG = """
[execution]
private_stream = false
[execution.gate]
enabled = false
[execution.sink]
url = "{url}"
rate_limit_ms = 1
intent_ttl_ms = 120000
sweep_interval_s = 30.0
start_wait_ms = 120000
"""


def test_the_live_service_starts_on_its_markers_and_keeps_the_order_an_old_intent_placed(
    broker: Broker, unique: Callable[[str], str], tmp_path: Path
) -> None:
    """The execution service, tailing a two-partition intents topic: the start is judged
    from the markers (long before ``start_wait_ms``), ``mf-a`` (placed by the run before,
    its intent on the topic) is neither cancelled as an orphan nor placed again, and an
    intent made after the start is executed."""
    suffix = unique("xm").replace(".", "_")
    topics = topics_for(suffix)
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [topics.intents.name], partitions=2)
    others = [topics.order_events, topics.fills, topics.balances, topics.alerts]
    ensure_topics(brokers, [t.name for t in [*others, topics.risk_states]] + [DEAD_LETTERS.name])
    log = tmp_path / "execution.log"
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        asyncio.run(_rest_on_venue(ex, "mf-a"))
        produce_events(brokers, topics.intents, [_rest("mf-a", time.time_ns() - 60 * NS)])
        config = tmp_path / "makerflow.toml"
        config.write_text(SERVICE_CONFIG.format(url=ex.url))
        cmd = [sys.executable, "-m", "bytewax.run"]
        cmd += [f"tests.integration.execution_topics_flow:flow('{suffix}')"]
        env = service_env(broker.bootstrap, config)
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

        def orders() -> dict[str, str]:
            return dict(
                ex.call(
                    lambda s: [
                        (o.client_order_id, o.status)
                        for o in s.engine.all_orders("main", "BTCUSDT")
                    ]
                )
            )

        try:
            deadline = time.monotonic() + 60
            while "start judged" not in log.read_text():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            produce_events(brokers, topics.intents, [_rest("mf-c", time.time_ns())])
            while "mf-c" not in orders():
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            kill_if_running(proc)
        assert orders() == {"mf-a": "NEW", "mf-c": "NEW"}
    text = log.read_text()
    assert "start judged with 1 intent(s) held" in text, text[-3000:]
    assert "not all read" not in text
    alerts = read_topic(brokers, topics.alerts.name, idle=0.5, timeout=30)
    assert not [m for m in alerts if b"OrphanOrder" in m.value()]
