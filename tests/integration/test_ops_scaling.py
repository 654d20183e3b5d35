"""Scaling per partition: the ticks service over a 4-partition topic with 1, 2 and 4
workers and with 2 processes (``-i/-a``) writes the same ticks for every market, in the same
order, with the shipped configuration (event-time alignment is on by default, and a replay
with ``MAKERFLOW_TAIL=0`` merges without a time bound)."""

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


def per_market_ticks(tmp_path: Path, workers: int, processes: int) -> dict[str, list[bytes]]:
    base = [e for e in read_recorded(RECORDING) if not isinstance(e, DeadLetter)]
    with Broker(log_path=tmp_path / f"tansu-{workers}-{processes}.log") as b:
        brokers = [b.bootstrap]
        ensure_topics(brokers, [x.name for x in t.TOPICS.values()], partitions=4)
        for sym in SYMBOLS:
            evs = [msgspec.structs.replace(e, symbol=sym) for e in base]
            produce_events(brokers, t.MD_BOOK, [e for e in evs if not isinstance(e, Trade)])
            produce_events(brokers, t.MD_TRADES, [e for e in evs if isinstance(e, Trade)])
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MAKERFLOW_BROKERS": b.bootstrap,
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
            subprocess.Popen(
                c, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for c in cmds
        ]
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err.decode()[-3000:]
        by_market: dict[str, list[bytes]] = defaultdict(list)
        for m in read_topic(brokers, t.TICKS.name, idle=5.0):
            by_market[m.key().decode()].append(bytes(m.value()))
        return dict(by_market)


def test_every_worker_count_writes_the_same_ticks_per_market(tmp_path: Path) -> None:
    one = per_market_ticks(tmp_path, 1, 1)
    assert sorted(one) == sorted(f"binance:{s}" for s in SYMBOLS)
    assert all(len(v) > 1000 for v in one.values())
    for workers, processes in [(2, 1), (4, 1), (1, 2)]:
        other = per_market_ticks(tmp_path, workers, processes)
        assert other == one, f"{workers} workers x {processes} processes differ"
