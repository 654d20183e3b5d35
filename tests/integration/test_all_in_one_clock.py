"""Found on main: the Kafka all-in-one flow wired no wall clock, so a live run never judged
market-data staleness. Now a live (tailing) all-in-one service pauses a market whose data
does not come, publishes every scope's state from the start, and refuses unsigned control.
``python -m bytewax.run makerflow.flows.all_in_one:flow`` on a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas import topics as t
from makerflow.schemas.events import ControlCommand
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SCOPE = "market:binance:BTC/USDT"


@pytest.mark.timeout(90)
def test_a_live_all_in_one_service_pauses_a_silent_market(tmp_path: Path) -> None:
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(
        "[all_in_one]\nexecute = false\n"
        "[all_in_one.risk]\nheartbeat_ms = 250\nstate_heartbeat_ms = 500\n"
        '[[all_in_one.risk.markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\n'
        "[all_in_one.risk.markets.limits]\npause_data_age_ms = 1000\n"
    )
    with Broker(log_path=tmp_path / "tansu.log") as broker:
        brokers = [broker.bootstrap]
        ensure_topics(brokers, list(t.TOPICS))
        env = {
            **os.environ,
            "MAKERFLOW_BROKERS": broker.bootstrap,
            "MAKERFLOW_CONFIG": str(cfg),
            "MAKERFLOW_METRICS_PORT": "0",
            "MAKERFLOW_CONTROL_KEY": "all-in-one-test-control-key",
        }
        log = (tmp_path / "flow.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "makerflow.flows.all_in_one:flow"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # An unsigned resume written straight to the topic changes nothing.
            produce_events(
                brokers,
                t.CONTROL,
                [
                    ControlCommand(
                        ts=time.time_ns(),
                        command="resume",
                        scope=SCOPE,
                        issued_by="mallory",
                        reason="trust me",
                    )
                ],
            )
            deadline = time.monotonic() + 60
            states: list[dict] = []
            while time.monotonic() < deadline:
                states = [
                    json.loads(m.value()) for m in read_topic(brokers, t.RISK_STATE.name, idle=0.5)
                ]
                if any(s["scope"] == SCOPE and s["status"] == "PAUSED" for s in states):
                    break
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()
        dead = [json.loads(m.value()) for m in read_topic(brokers, t.DEAD_LETTERS.name, idle=0.5)]
        alerts = [json.loads(m.value()) for m in read_topic(brokers, t.ALERTS.name, idle=0.5)]
    paused = [s for s in states if s["scope"] == SCOPE and s["status"] == "PAUSED"]
    assert paused, (tmp_path / "flow.log").read_text()[-3000:]
    assert "pause limit 1 s" in paused[0]["reasons"][0]
    heard = {s["scope"] for s in states}
    assert {"global", "account:main", "asset:BTC", "asset:USDT", SCOPE} <= heard
    assert any(d["reason"].startswith("unsigned") for d in dead)
    assert "ControlCommandRefused" in {a["name"] for a in alerts}
