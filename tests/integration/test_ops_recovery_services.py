"""kill -9 of the quoter and the risk service under ``makerflow run --recovery``: every
output message of an uninterrupted run is there after the restart, and the only repeats are
the replayed epoch's, identical to what was emitted the first time (same client order ids,
same content), so the intents' consumers drop them.

Each service is run twice on fresh brokers holding the same recorded Binance BTC/USDT ticks
(bookTicker, receive time as event time): once uninterrupted to the end of the topic (the
reference), once while the ticks arrive in chunks, SIGKILLed mid-stream and restarted on
the same recovery directory to the end of the topic. Only the ticks topic has data, so the
order of the outputs is fixed by it (the services merge their inputs in arrival order, see
the README's *Determinism*), and the runs can be compared message by message. Risk runs
without its wall clock (``MAKERFLOW_WALL_CLOCK=0``), which would make its states depend on
the time of the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.operators.order_state import OrderState
from makerflow.schemas import topics as t
from makerflow.schemas.events import OrderIntent
from makerflow.schemas.topics import Topic
from tests.conftest import REPO
from tests.processes import kill_if_running
from tests.quoting_support import load_ticks

pytestmark = pytest.mark.slow

QUOTER_CONFIG = """
[quoting]
id_namespace = "kill9"
[quoting.defaults]
warmup_s = 0.0
sigma_initial = 4.0
min_quote_lifetime_s = 0.0
levels = 2
# no execution service answers in this test: lift the bound on orders nobody has closed
max_unresolved_orders = 100000
[[quoting.markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.01
lot_size = 0.00001
min_qty = 0.00001
min_notional = 5.0
index_basket = "BTC"
"""

RISK_CONFIG = """
[risk]
window_ms = 2000
slide_ms = 200
[[risk.markets]]
venue = "binance"
symbol = "BTC/USDT"
index_basket = "BTC"
"""


@dataclass(frozen=True)
class Service:
    name: str
    config: str
    output: Topic[Any]
    kill_after: int  # outputs; about a third of what the 8000 recorded ticks make


QUOTER = Service("quoter", QUOTER_CONFIG, t.ORDER_INTENTS, 650)  # of 2002
RISK = Service("risk", RISK_CONFIG, t.RISK_STATE, 80)  # of 245


def env_for(brokers: str, config: Path, tail: bool) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW_")}
    return base | {
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": brokers,
        "MAKERFLOW_CONFIG": str(config),
        "MAKERFLOW_TAIL": "1" if tail else "0",
        "MAKERFLOW_METRICS_PORT": "0",
        "MAKERFLOW_WALL_CLOCK": "0",
    }


def start(
    svc: Service, brokers: str, config: Path, recovery: Path, log: Path, tail: bool
) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it; closed when the test ends)
    cmd = [sys.executable, "-m", "makerflow.cli", "run", svc.name]
    cmd += ["--recovery", str(recovery), "--snapshot-s", "1"]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env_for(brokers, config, tail), stdout=out, stderr=subprocess.STDOUT
    )


def outputs(brokers: str, topic: Topic[Any], idle: float = 1.5) -> dict[bytes, list[bytes]]:
    """Each key's messages in order. Until the topic has been quiet a while: its reported
    end is short on tansu. Read only once the writer has exited (or been killed), so every
    message is already on the broker and a short quiet spell is the end. Per key, because
    only a key's order is fixed: messages of different keys (risk's scopes) come out of
    different steps, interleaved by timing."""
    out: dict[bytes, list[bytes]] = {}
    for m in read_topic([brokers], topic.name, idle=idle):
        out.setdefault(bytes(m.key() or b""), []).append(bytes(m.value()))
    return out


def count(by_key: dict[bytes, list[bytes]]) -> int:
    return sum(map(len, by_key.values()))


def wait_for_line(log: Path, line: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while line not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(log.read_text()[-3000:])
        time.sleep(0.1)


def feed_in_chunks(brokers: str, ticks: list[Any], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        for i in range(0, len(ticks), 200):
            if stop.is_set():
                return
            produce_events([brokers], t.TICKS, ticks[i : i + 200])
            time.sleep(0.1)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def kill_9_and_resume(
    svc: Service, tmp_path: Path, check: Callable[[list[bytes], list[bytes]], None]
) -> None:
    ticks = load_ticks(8000)
    config = tmp_path / "makerflow.toml"
    config.write_text(svc.config)
    with (
        Broker(log_path=tmp_path / "ref-broker.log") as ref,
        Broker(log_path=tmp_path / "crash-broker.log") as crash,
    ):
        for b in (ref, crash):
            ensure_topics([b.bootstrap], list(t.TOPICS))

        # The reference run goes on on its own broker while the crash run does (the crash
        # feed is paced, so the two share the machine); the kill comes after a fixed count
        # of outputs, about a third of the reference's (the recorded ticks fix it).
        produce_events([ref.bootstrap], t.TICKS, ticks)
        ref_log = tmp_path / "ref.log"
        run = start(svc, ref.bootstrap, config, tmp_path / "ref-rec", ref_log, tail=False)

        recovery, log = tmp_path / "recovery", tmp_path / "crash.log"
        first = start(svc, crash.bootstrap, config, recovery, log, tail=True)
        stop = threading.Event()
        try:
            # The feed starts once the service is up, so it can be short and still be going
            # on when the service is a third of the way through.
            wait_for_line(log, "serving Prometheus metrics on", first)
            feeder = feed_in_chunks(crash.bootstrap, ticks, stop)
            part = read_topic(
                [crash.bootstrap], svc.output.name, expected=svc.kill_after, timeout=90
            )
            assert len(part) >= svc.kill_after, log.read_text()[-3000:]
            # Mid-epoch on most runs: the kill lands between two snapshots (every 1 s).
            time.sleep(0.3)
            assert first.poll() is None, log.read_text()[-3000:]
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert feeder.is_alive(), "the ticks were all in before the kill: not mid-stream"
            before_restart = outputs(crash.bootstrap, svc.output)
            feeder.join(timeout=60)
            second = start(svc, crash.bootstrap, config, recovery, log, tail=False)
            assert second.wait(timeout=120) == 0, log.read_text()[-3000:]
            assert run.wait(timeout=120) == 0, ref_log.read_text()[-3000:]
        finally:
            stop.set()
            for p in (first, run):
                kill_if_running(p)
        reference = outputs(ref.bootstrap, svc.output)
        assert count(reference) > 3 * svc.kill_after, ref_log.read_text()[-3000:]
        got = outputs(crash.bootstrap, svc.output)
    text = log.read_text()
    assert "created recovery store" in text and f"resuming {svc.name} from recovery store" in text

    repeated = 0
    for key, ref in reference.items():
        mine, before = got.get(key, []), before_restart.get(key, [])
        k = len(before)
        # Before the kill: exactly the reference's first k messages of the key.
        assert mine[:k] == ref[:k], key
        # After the restart: the reference from the last snapshot to its end; the overlap
        # is the replayed epoch, emitted again with the same content.
        resumed = mine[k:]
        j = len(ref) - len(resumed)
        assert 0 <= j <= k, f"{key!r}: {len(ref) - len(mine)} messages lost"
        assert resumed == ref[j:], key
        repeated += k - j
    assert sorted(got) == sorted(reference)
    k = count(before_restart)
    assert 0 < k < count(reference)
    assert repeated < k, "the restart began again from the first message"
    print(f"{svc.name}: kill -9 after {k} of {count(reference)}: {repeated} repeated, none lost")
    check([v for vs in reference.values() for v in vs], [v for vs in got.values() for v in vs])


def test_quoter_kill_9_loses_no_intent_and_repeats_only_the_replayed_epoch(
    tmp_path: Path,
) -> None:
    def same_orders(reference: list[bytes], got: list[bytes]) -> None:
        # The intents' consumer (the one order state, as execution keeps it) drops the
        # replayed epoch's repeats: the same orders, the same state.
        states = []
        for run in (reference, got):
            state = OrderState()
            for raw in run:
                state.on_intent(t.ORDER_INTENTS.codec.decode(raw))
            states.append(state.snapshot())
        assert states[0] == states[1]
        places = [
            i.client_order_id
            for i in map(t.ORDER_INTENTS.codec.decode, got)
            if isinstance(i, OrderIntent) and i.action == "place"
        ]
        assert len(set(places)) == sum(
            1 for r in reference if t.ORDER_INTENTS.codec.decode(r).action == "place"
        )

    kill_9_and_resume(QUOTER, tmp_path, same_orders)


def test_risk_kill_9_loses_no_state_and_repeats_only_the_replayed_epoch(
    tmp_path: Path,
) -> None:
    def nothing_new(reference: list[bytes], got: list[bytes]) -> None:
        assert set(got) == set(reference)

    kill_9_and_resume(RISK, tmp_path, nothing_new)
