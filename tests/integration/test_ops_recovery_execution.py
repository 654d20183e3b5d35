"""kill -9 of the execution service under the Bytewax runner with recovery, against the local
exchange through the unmodified ccxt client: nothing is placed twice, old intents are not
executed again, every cancel is, and orders.events has every outcome.

The local exchange refuses a client id only while its order is open (as Binance does): once
an order is closed its id may be sent again and would place a second order, so only
makerflow's own logic can stop a duplicate of a closed order (the market buy, the canceled
ones).

The run: execution starts on an empty store; a first set of intents (A) is executed and a
snapshot holds them; a second set (B: a market buy, two places, two cancels) is executed and
the service is SIGKILLed before the next snapshot, so the epoch it replays holds intents it
already sent. While it is down a cancel and a place (C) are produced. It restarts on the
store once B's places are older than their time-to-live (a restart takes longer than that in
production too) and runs to the end of the topic.
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from makerflow.exchange import LocalExchange
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as reg
from tests.conftest import FIXTURES, REPO
from tests.integration.execution_topics_flow import intent, rest, service_env, topics_for
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
TTL_MS = 1500
SNAPSHOT_S = 4

CONFIG = """
[execution]
private_stream = false
[execution.gate]
enabled = false
[execution.sink]
url = "{url}"
rate_limit_ms = 1
intent_ttl_ms = {ttl}
sweep_interval_s = 30.0
"""


def start(suffix: str, env: dict[str, str], rec: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it)
    cmd = [sys.executable, "-m", "bytewax.run"]
    cmd += [f"tests.integration.execution_topics_flow:flow('{suffix}')"]
    cmd += ["-r", str(rec), "-s", str(SNAPSHOT_S), "-b", "0"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def snapshot_cids(rec: Path) -> set[str]:
    """The client ids in the execution step's newest snapshot of the market."""
    db = sqlite3.connect(rec / "part-0.sqlite3")
    try:
        row = db.execute(
            "SELECT ser_change FROM snaps WHERE step_id LIKE '%execute.execute' "
            "AND state_key = 'binance:BTC/USDT' ORDER BY snap_epoch DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    if row is None or row[0] is None:
        return set()
    return {o.client_order_id for o in pickle.loads(row[0]).orders}


def wait_for(pred: Any, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}\n" + (log.read_text()[-3000:])
        )
        time.sleep(0.02)


def test_execution_kill_9_places_nothing_twice_and_executes_every_cancel(
    broker: Any, unique: Any, tmp_path: Path
) -> None:
    suffix = unique("xr").replace(".", "_")
    topics = topics_for(suffix)
    brokers = (broker.bootstrap,)
    names = [topics.intents, topics.order_events, topics.fills, topics.balances]
    names += [topics.alerts, topics.risk_states]
    ensure_topics(brokers, [t.name for t in names] + [reg.DEAD_LETTERS.name])
    rec, log = tmp_path / "rec", tmp_path / "execution.log"
    rec.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(rec), "1"], check=True)

    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        config = tmp_path / "makerflow.toml"
        # The first run starts while A waits on the topic: no time-to-live for it.
        config.write_text(CONFIG.format(url=ex.url, ttl=60_000))
        env = service_env(broker.bootstrap, config)

        def orders() -> list[tuple[str, str]]:
            return ex.call(
                lambda s: [
                    (o.client_order_id, o.status) for o in s.engine.all_orders("main", "BTCUSDT")
                ]
            )

        def statuses() -> dict[str, str]:
            return dict(orders())

        btc_before = ex.call(lambda s: s.engine.balances("main")["BTC"].free)
        first = start(suffix, env | {"MAKERFLOW_TAIL": "1"}, rec, log)
        try:
            produce_events(brokers, topics.intents, [rest("mf-a0"), rest("mf-a1"), rest("mf-a2")])
            wait_for(lambda: len(statuses()) == 3, "A placed", log)
            wait_for(lambda: {"mf-a0", "mf-a1", "mf-a2"} <= snapshot_cids(rec), "A's snapshot", log)
            b = [
                intent("mf-m", side="buy", qty=0.002, order_type="market", reference=61837.0),
                rest("mf-b1"),
                rest("mf-b2"),
                intent("mf-a1", "cancel"),
                intent("mf-b1", "cancel"),
            ]
            produce_events(brokers, topics.intents, b)
            done = {"mf-m": "FILLED", "mf-a1": "CANCELED", "mf-b1": "CANCELED", "mf-b2": "NEW"}
            wait_for(lambda: done.items() <= statuses().items(), "B executed", log)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            kill_if_running(first)
        # The kill came before the next snapshot: the restart replays B, already sent.
        assert "mf-m" not in snapshot_cids(rec), "B was snapshotted before the kill"
        # Produced while execution is down: a cancel (always honoured) and a place that is
        # older than its time-to-live by the time execution is back (never sent).
        produce_events(brokers, topics.intents, [intent("mf-a2", "cancel"), rest("mf-c1")])
        time.sleep(TTL_MS / 1000 + 0.1)
        config.write_text(CONFIG.format(url=ex.url, ttl=TTL_MS))
        second = start(suffix, env | {"MAKERFLOW_TAIL": "0"}, rec, log)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
        on_venue = orders()
        btc_after = ex.call(lambda s: s.engine.balances("main")["BTC"].free)

    text = log.read_text()
    # Every client id reached the exchange once; the old place produced while down never did.
    placed = Counter(cid for cid, _ in on_venue)
    assert placed == Counter(["mf-a0", "mf-a1", "mf-a2", "mf-m", "mf-b1", "mf-b2"]), on_venue
    # The market buy was executed once: the base balance moved once (0.1 % taker fee in BTC).
    assert float(btc_after - btc_before) == pytest.approx(0.002 * 0.999)
    # Every cancel was executed, the one produced while down too.
    assert dict(on_venue) == {
        "mf-a0": "NEW",
        "mf-a1": "CANCELED",
        "mf-a2": "CANCELED",
        "mf-m": "FILLED",
        "mf-b1": "CANCELED",
        "mf-b2": "NEW",
    }, text[-3000:]
    events = [
        reg.ORDER_EVENTS.codec.decode(m.value())
        for m in read_topic(brokers, topics.order_events.name, idle=1.0, timeout=30)
    ]
    seen = Counter((e.client_order_id, e.status) for e in events)
    # Every outcome is there, and no order the venue holds is reported otherwise.
    for cid, status in [
        ("mf-a0", "ack"),
        ("mf-a1", "canceled"),
        ("mf-a2", "canceled"),
        ("mf-m", "filled"),
        ("mf-b1", "canceled"),
        ("mf-b2", "ack"),
    ]:
        assert seen[(cid, status)] >= 1, (cid, status, seen)
        assert not any(e.status == "rejected" for e in events if e.client_order_id == cid), [
            (e.client_order_id, e.status, e.reason) for e in events if e.client_order_id == cid
        ]
    [c1] = [e for e in events if e.client_order_id == "mf-c1"]
    assert c1.status == "rejected" and c1.reason.startswith("expired_intent"), c1
    # Duplicates only from the replayed epoch: what was answered before the snapshot is not
    # emitted again.
    assert seen[("mf-a0", "ack")] == seen[("mf-a2", "ack")] == seen[("mf-a1", "ack")] == 1, seen
