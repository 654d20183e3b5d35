"""Scaling per partition: the ticks service over a 4-partition topic with 1 and 4
workers and with 2 processes (``-i/-a``) writes the same ticks for every market, in the same
order, with the shipped configuration (event-time alignment is on by default, and a replay
with ``MAKERFLOW_TAIL=0`` merges without a time bound).

One broker serves every run: the input is produced once, each run replays it from the
start (no recovery, ``MAKERFLOW_TAIL=0``) and appends its ticks to ``ticks``; a run's ticks
are the records past the offsets the previous runs ended at, per partition. ``-w 2`` is not
run here: test_ops_determinism already shows it writes what ``-w 1`` writes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from makerflow.broker import Broker, free_port
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as t
from makerflow.schemas.events import DeadLetter, Trade
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow

RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
SYMBOLS = [f"C{i}/USDT" for i in range(6)]


def run_ticks(brokers: str, workers: int, processes: int) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": brokers,
        "MAKERFLOW_TAIL": "0",
        "MAKERFLOW_METRICS_PORT": "0",
    }
    cmd = [sys.executable, "-m", "makerflow.cli", "run", "ticks", "-w", str(workers)]
    if processes > 1:
        addrs = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        cmds = [[*cmd, "-i", str(i), "-a", addrs] for i in range(processes)]
    else:
        cmds = [cmd]
    procs = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for c in cmds
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]


def test_every_worker_count_writes_the_same_ticks_per_market(tmp_path: Path) -> None:
    base = [e for e in read_recorded(RECORDING) if not isinstance(e, DeadLetter)]
    with Broker(log_path=tmp_path / "tansu.log") as b:
        brokers = [b.bootstrap]
        ensure_topics(brokers, [x.name for x in t.TOPICS.values()], partitions=4)
        for sym in SYMBOLS:
            evs = [msgspec.structs.replace(e, symbol=sym) for e in base]
            produce_events(brokers, t.MD_BOOK, [e for e in evs if not isinstance(e, Trade)])
            produce_events(brokers, t.MD_TRADES, [e for e in evs if isinstance(e, Trade)])
        ended: dict[int, int] = defaultdict(int)  # per partition: offset the last run ended at

        def per_market_ticks(workers: int, processes: int) -> dict[str, list[bytes]]:
            run_ticks(b.bootstrap, workers, processes)
            # The run has exited, so its ticks are all on the broker: a short quiet spell
            # ends the read.
            by_market: dict[str, list[bytes]] = defaultdict(list)
            for m in read_topic(brokers, t.TICKS.name, idle=1.5):
                part, off = m.partition(), m.offset()
                assert part is not None and off is not None
                if off >= ended[part]:
                    by_market[m.key().decode()].append(bytes(m.value()))
                    ended[part] = max(ended[part], off + 1)
            return dict(by_market)

        one = per_market_ticks(1, 1)
        assert sorted(one) == sorted(f"binance:{s}" for s in SYMBOLS)
        assert all(len(v) > 1000 for v in one.values())
        for workers, processes in [(4, 1), (1, 2)]:
            other = per_market_ticks(workers, processes)
            assert other == one, f"{workers} workers x {processes} processes differ"
