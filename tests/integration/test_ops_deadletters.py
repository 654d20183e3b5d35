"""``makerflow deadletters list|replay`` on letters a real service wrote: the ticks service
dead-letters a malformed trade, the list shows it with its source and reason, and a replay
sends the raw bytes and key back (here to a review topic, as the runbook does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.cli import main
from makerflow.kafka_admin import ensure_topics, produce_raw, read_topic
from makerflow.schemas.topics import TOPICS
from tests.conftest import REPO

pytestmark = pytest.mark.slow

BAD = b'{"type": "trade", "v": 1, "ts": "yesterday"}'


def test_list_and_replay_a_letter_the_ticks_service_wrote(tmp_path: Path, capsys) -> None:
    with Broker(log_path=tmp_path / "tansu.log") as b:
        ensure_topics([b.bootstrap], [*TOPICS, "review"])
        produce_raw([b.bootstrap], "md.trades", [(b"binance:BTC/USDT", BAD)])
        run = subprocess.run(
            [sys.executable, "-m", "makerflow.cli", "run", "ticks"],
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "MAKERFLOW_BROKERS": b.bootstrap,
                "MAKERFLOW_TAIL": "0",
                "MAKERFLOW_METRICS_PORT": "0",
            },
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr.decode()

        # The service has exited: its letter is on the broker, a short quiet spell ends a read.
        args = ["--brokers", b.bootstrap, "--idle", "0.4"]
        assert main(["deadletters", "list", "--json", *args]) == 0
        letters = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(letters) == 1
        (letter,) = letters
        assert letter["step"] == "ticks.in_md_trades"
        assert letter["topic"] == "md.trades" and letter["source_offset"] == 0
        assert "ts" in letter["reason"]

        # A filter that matches nothing, then a dry run, then the replay.
        assert main(["deadletters", "list", "--step", "quoter.quoting", *args]) == 0
        assert capsys.readouterr().out == ""
        assert main(["deadletters", "replay", "--to", "review", "--dry-run", *args]) == 0
        assert capsys.readouterr().out.strip() == "would send 1 letters to review"
        assert read_topic([b.bootstrap], "review", idle=0.5) == []
        assert main(["deadletters", "replay", "--to", "review", *args]) == 0
        assert capsys.readouterr().out.strip() == "sent 1 letters to review"
        (back,) = read_topic([b.bootstrap], "review", expected=1, timeout=20)
        assert back.value() == BAD
        assert back.key() == b"binance:BTC/USDT"
