"""Deterministic by default: the ticks service over Kafka with the *shipped* configuration
(no ``align_ms`` set) writes the same ticks, per market and in the same order, whatever
the order in which md.book and md.trades are read.

Two brokers get the same two markets on 4-partition topics: on one the whole md.trades
topic is produced before md.book (every trade is read before its market's first book
snapshot), on the other md.book first. ``-w 1`` on one and ``-w 2`` (two processes under
``makerflow run``'s supervisor) on the other, replaying with ``MAKERFLOW_TAIL=0``. On main
(``align_ms = 0``) the trades-first run lost every trade tick read before the book and the
two runs differed in almost every tick.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as t
from makerflow.schemas.events import DeadLetter, Tick, Trade
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow

RECORDING = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
SYMBOLS = ["A/USDT", "B/USDT"]


def run_ticks(tmp_path: Path, workers: int, trades_first: bool) -> dict[str, list[bytes]]:
    base = [e for e in read_recorded(RECORDING) if not isinstance(e, DeadLetter)]
    with Broker(log_path=tmp_path / f"tansu-{workers}-{trades_first}.log") as b:
        brokers = [b.bootstrap]
        ensure_topics(brokers, [x.name for x in t.TOPICS.values()], partitions=4)
        evs = [msgspec.structs.replace(e, symbol=s) for s in SYMBOLS for e in base]
        book = [e for e in evs if not isinstance(e, Trade)]
        trades = [e for e in evs if isinstance(e, Trade)]
        order = [(t.MD_TRADES, trades), (t.MD_BOOK, book)]
        for topic, batch in order if trades_first else order[::-1]:
            produce_events(brokers, topic, batch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW_")} | {
            "PYTHONPATH": str(REPO),
            "MAKERFLOW_BROKERS": b.bootstrap,
            "MAKERFLOW_TAIL": "0",
            "MAKERFLOW_METRICS_PORT": "0",
        }
        cmd = [sys.executable, "-m", "makerflow.cli", "run", "ticks", "-w", str(workers)]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=240)
        assert p.returncode == 0, p.stderr.decode()[-3000:]
        by_market: dict[str, list[bytes]] = defaultdict(list)
        # The run has exited: every tick is on the broker, a short quiet spell is the end.
        for m in read_topic(brokers, t.TICKS.name, idle=1.5):
            by_market[m.key().decode()].append(bytes(m.value()))
        return dict(by_market)


def test_default_config_ticks_do_not_depend_on_topic_order_or_workers(tmp_path: Path) -> None:
    # The two runs are independent (a broker each): side by side, one per core.
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_ticks, tmp_path, workers=1, trades_first=True)
        second = pool.submit(run_ticks, tmp_path, workers=2, trades_first=False)
        trades_first, book_first = first.result(), second.result()
    assert sorted(trades_first) == [f"binance:{s}" for s in SYMBOLS]
    for key, ticks in trades_first.items():
        reasons = [msgspec.json.decode(v, type=Tick).reason for v in ticks]
        assert reasons.count("trade") > 1000, key  # the trades read first made ticks
    assert trades_first == book_first
