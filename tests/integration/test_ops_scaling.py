"""Scaling per partition: the ticks service over a 4-partition topic with 1 worker, 4
worker threads of one process (``--threads``) and 2 processes under ``makerflow run``'s
supervisor (``--workers 2``, the default for more than one worker) writes the same ticks for
every market, in the same order, with the shipped configuration (event-time alignment is on
by default, and a replay with ``MAKERFLOW_TAIL=0`` merges without a time bound). The
supervisor passes SIGTERM on to both processes and exits 143; SIGKILL of one process stops
the other, the supervisor exits 137, and a restart on the same recovery store (one store,
two partitions, shared by the two processes) resumes from its last snapshot.

One broker serves every test of the module: the input is produced once, each run replays it
from the start (``MAKERFLOW_TAIL=0``) and appends its ticks to ``ticks``; a run's ticks are
the records past the offsets the previous runs ended at, per partition. The supervisor runs
the same ``bytewax.run -w 1 -i k -a ...`` command lines as processes started by hand
(benchmarks/scaling.py runs those too); ``-w 2`` threads are not run here:
test_ops_partition_spread shows 2 and 4 threads read and key alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as t
from makerflow.schemas.events import DeadLetter, Trade
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES, REPO
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow

RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
SYMBOLS = [f"C{i}/USDT" for i in range(6)]

Ticks = dict[str, list[bytes]]


def service_env(brokers: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": brokers,
        "MAKERFLOW_TAIL": "0",
        "MAKERFLOW_METRICS_PORT": "0",
        **extra,
    }


def makerflow_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "makerflow.cli", "run", "ticks", *args]


def run_ticks(brokers: str, *args: str) -> None:
    """``makerflow run ticks ARGS...`` to the end of the topics."""
    p = subprocess.run(
        makerflow_run(*args),
        cwd=REPO,
        env=service_env(brokers),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr.decode()[-3000:]


@dataclass
class Topics:
    """The broker with the recording on it, and what previous runs wrote to ``ticks``."""

    broker: Broker
    ended: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    """Per partition of ``ticks``: the offset the last run read ended at."""

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def new_ticks(self) -> Ticks:
        """Per market, the ticks written since the last call. Only call it once the run has
        exited (or been killed): every tick is then on the broker, so a short quiet spell ends
        the read."""
        by_market: dict[str, list[bytes]] = defaultdict(list)
        for m in read_topic([self.bootstrap], t.TICKS.name, idle=1.5):
            part, off = m.partition(), m.offset()
            assert part is not None and off is not None
            if off >= self.ended[part]:
                by_market[m.key().decode()].append(bytes(m.value()))
                self.ended[part] = max(self.ended[part], off + 1)
        return dict(by_market)


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topics]:
    """A broker of the module's own: the service reads the real topic names (4 partitions
    here), which tests on the session broker also create."""
    base = [e for e in read_recorded(RECORDING) if not isinstance(e, DeadLetter)]
    with Broker(log_path=tmp_path_factory.mktemp("scaling") / "tansu.log") as b:
        brokers = [b.bootstrap]
        ensure_topics(brokers, [x.name for x in t.TOPICS.values()], partitions=4)
        for sym in SYMBOLS:
            evs = [msgspec.structs.replace(e, symbol=sym) for e in base]
            produce_events(brokers, t.MD_BOOK, [e for e in evs if not isinstance(e, Trade)])
            produce_events(brokers, t.MD_TRADES, [e for e in evs if isinstance(e, Trade)])
        yield Topics(b)


@pytest.fixture(scope="module")
def one_worker(topics: Topics) -> Ticks:
    """The reference: one worker (the plain exec, no supervisor)."""
    run_ticks(topics.bootstrap, "-w", "1")
    one = topics.new_ticks()
    assert sorted(one) == sorted(f"binance:{s}" for s in SYMBOLS)
    assert all(len(v) > 1000 for v in one.values())
    return one


def test_every_worker_count_writes_the_same_ticks_per_market(
    topics: Topics, one_worker: Ticks
) -> None:
    for args in (["-w", "4", "--threads"], ["-w", "2"]):
        run_ticks(topics.bootstrap, *args)
        assert topics.new_ticks() == one_worker, f"{args} differ from one worker"


def start(topics: Topics, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            makerflow_run(*args),
            cwd=REPO,
            env=service_env(topics.bootstrap, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def children(proc: subprocess.Popen[bytes]) -> list[int]:
    text = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_until_serving(proc: subprocess.Popen[bytes], log: Path, processes: int) -> list[int]:
    """Until every process of the cluster serves /metrics (its flow is built); their pids."""
    deadline = time.monotonic() + 60
    while log.read_text().count("serving Prometheus metrics on") < processes:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    pids = children(proc)
    assert len(pids) == processes, log.read_text()[-3000:]
    return pids


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_sigterm_to_the_supervisor_stops_both_processes(topics: Topics, tmp_path: Path) -> None:
    log = tmp_path / "ticks.log"
    # Tailing from the end: the service waits for input that never comes (and writes none).
    proc = start(topics, log, "-w", "2", MAKERFLOW_TAIL="1", MAKERFLOW_FROM="end")
    try:
        pids = wait_until_serving(proc, log, 2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        kill_if_running(proc)
    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert all(gone(p) for p in pids)
    # Both stopped by the SIGTERM passed on, none had to be killed after the grace period.
    assert "process 0 killed by SIGTERM" in text and "process 1 killed by SIGTERM" in text
    assert "SIGKILL" not in text, text[-3000:]


def test_sigkill_of_one_process_stops_the_other_and_a_restart_resumes(
    topics: Topics, one_worker: Ticks, tmp_path: Path
) -> None:
    recovery, log = tmp_path / "recovery", tmp_path / "ticks.log"
    store = ["-w", "2", "--recovery", str(recovery), "--snapshot-s", "1"]
    before_ticks = sum(topics.ended.values())
    # Tailing, so the run is still there to be killed however fast it gets through the input;
    # an alignment bound past the recording's span merges as the bounded replay does.
    first = start(topics, log, *store, MAKERFLOW_TAIL="1", MAKERFLOW__TICKS__ALIGN_MS="120000")
    try:
        pids = wait_until_serving(first, log, 2)
        # Some ticks out, and a snapshot (1 s epochs) behind them, before the kill.
        out = read_topic(
            [topics.bootstrap], t.TICKS.name, expected=before_ticks + 2000, timeout=120
        )
        assert len(out) >= before_ticks + 2000, log.read_text()[-3000:]
        time.sleep(2.5)
        os.kill(pids[1], signal.SIGKILL)
        code = first.wait(timeout=30)
    finally:
        kill_if_running(first)
    text = log.read_text()
    assert code == 128 + signal.SIGKILL, text[-3000:]
    assert "process 1 killed by SIGKILL: stopping the others" in text
    assert gone(pids[0])
    assert sorted(p.name for p in recovery.iterdir() if p.suffix == ".sqlite3") == [
        "part-0.sqlite3",
        "part-1.sqlite3",
    ]
    before = topics.new_ticks()

    run_ticks(topics.bootstrap, *store)  # restarted on the same store, to the end
    after = topics.new_ticks()
    for key, reference in one_worker.items():
        got, resumed = before.get(key, []), after.get(key, [])
        k = len(got)
        assert got == reference[:k], f"{key}: before the kill, not the reference's first ticks"
        j = len(reference) - len(resumed)
        assert 0 < j <= k, f"{key}: {k} ticks before the kill, the restart began at {j}"
        assert resumed == reference[j:], key
