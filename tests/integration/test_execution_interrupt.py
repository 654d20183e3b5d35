"""Ctrl-C of the execution service: it closes its exchange client and exits at once with
128 + the signal, without a traceback (SIGTERM takes the same handler)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.exchange import LocalExchange
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.schemas import topics as t
from tests.conftest import FIXTURES, REPO
from tests.integration.execution_topics_flow import service_env
from tests.processes import kill_if_running

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"


def test_execution_service_closes_its_exchange_client_and_exits_on_ctrl_c(tmp_path: Path) -> None:
    sig = signal.SIGINT
    log = tmp_path / "execution.log"
    with (
        Broker(log_path=tmp_path / "broker.log") as broker,
        LocalExchange(speed=0, replay=REPLAY) as ex,
    ):
        ex.advance(1)
        ensure_topics([broker.bootstrap], list(t.TOPICS))
        config = tmp_path / "makerflow.toml"
        config.write_text(
            f'[execution.private]\nurl = "{ex.url}"\nmode = "websocket"\n'
            f'[execution.sink]\nurl = "{ex.url}"\n'
        )
        env = service_env(broker.bootstrap, config)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "makerflow.cli", "run", "execution"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                # The start's mass status wrote the balances: the exchange client is open.
                got = read_topic([broker.bootstrap], t.BALANCES.name, expected=1, timeout=60)
                assert got, log.read_text()[-3000:]
                proc.send_signal(sig)
                code = proc.wait(timeout=30)
            finally:
                kill_if_running(proc)
    text = log.read_text()
    assert code == 128 + sig, text[-3000:]
    assert f"execution: {sig.name}: closing the exchange clients" in text
    assert "execution: 1 exchange client(s) closed; exiting" in text
    assert "Traceback" not in text, text[-3000:]
