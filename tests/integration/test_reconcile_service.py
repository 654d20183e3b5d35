"""The reconcile service as users run it: ``python -m bytewax.run makerflow.flows.reconcile:flow``
with two workers on a real Kafka-protocol broker, then ``makerflow recon report`` on its topic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from makerflow.broker import Broker
from makerflow.cli import main
from makerflow.kafka_admin import ensure_topics, produce_events, produce_raw, read_topic
from makerflow.operators.recon_config import ReconConfig
from makerflow.operators.recon_logic import reconcile_all
from makerflow.schemas.events import BalanceSnapshot
from makerflow.schemas.topics import (
    ALERTS,
    BALANCES,
    DEAD_LETTERS,
    FILLS,
    RECON_REPORTS,
    TRANSFERS,
)
from tests.conftest import REPO
from tests.recon_sessions import T0, ordered, random_session, reports

pytestmark = pytest.mark.slow

# Replaying topics: the three inputs are read side by side, so one may run ahead of the
# others by the whole replay; a grace longer than the session absorbs that skew.
CONFIG = "[recon]\nwindow_s = 60.0\ngrace_s = 3600.0\nallowed_lateness_s = 3600.0\n"


def test_service_flow_on_two_workers_writes_reports_alerts_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = random_session(windows=6, fills_per_window=8, seed=11)
    session = [e for e in session if getattr(e, "trade_id", "") != "x17"]  # lost on the way
    bad = BalanceSnapshot(ts=T0 + 5, venue="local", asset="BTC", free=-1.0, total=-1.0)
    cfg = ReconConfig(window_s=60, grace_s=3600, allowed_lateness_s=3600)
    expected = ordered(reports(reconcile_all([*session, bad], cfg)))
    breaks = [r for r in expected if r.status == "BREAK"]
    assert breaks

    with Broker(log_path=tmp_path / "tansu.log") as b:
        brokers = [b.bootstrap]
        topics = (FILLS, BALANCES, TRANSFERS, RECON_REPORTS, ALERTS, DEAD_LETTERS)
        ensure_topics(brokers, [t.name for t in topics], partitions=2)
        for topic in (FILLS, BALANCES, TRANSFERS):
            produce_events(brokers, topic, [e for e in session if isinstance(e, topic.value_type)])
        produce_events(brokers, BALANCES, [bad])
        produce_raw(brokers, BALANCES.name, [(b"main:BTC", b"{not json")])

        (tmp_path / "recon.toml").write_text(CONFIG)
        env = {
            **os.environ,
            "MAKERFLOW_BROKERS": b.bootstrap,
            "MAKERFLOW_CONFIG": str(tmp_path / "recon.toml"),
            "MAKERFLOW_TAIL": "0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "makerflow.flows.reconcile:flow", "-w", "2"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]

        # The flow has finished, so all it wrote is on the broker: read each topic whole
        # (until 1 s without news), extras show.
        msgs = read_topic(brokers, RECON_REPORTS.name, idle=1.0, timeout=30)
        got = [RECON_REPORTS.codec.decode(m.value()) for m in msgs]
        alerts = [
            ALERTS.codec.decode(m.value())
            for m in read_topic(brokers, ALERTS.name, idle=1.0, timeout=30)
        ]
        dead = [
            DEAD_LETTERS.codec.decode(m.value())
            for m in read_topic(brokers, DEAD_LETTERS.name, expected=2, timeout=30)
        ]
        # Kafka keys are account:asset, so a balance's reports stay in order on one partition.
        assert {m.key() for m in msgs} == {f"{r.account}:{r.asset}".encode() for r in got}

        assert ordered(got) == expected
        assert sorted(a.labels["asset"] for a in alerts) == sorted(r.asset for r in breaks)
        reasons = sorted(d.reason for d in dead)
        assert len(dead) == 2, reasons
        assert any("negative balance" in r for r in reasons)
        assert any("malformed JSON" in r for r in reasons)

        out = tmp_path / "summary.parquet"
        code = main(
            ["recon", "report", "--topic", RECON_REPORTS.name, "--brokers", b.bootstrap,
             "--parquet", str(out)]
        )  # fmt: skip
        assert code == 0 and out.exists()
        printed = capsys.readouterr().out
        assert f"{len(expected)} reports" in printed
        assert f"{len(breaks)} windows in BREAK" in printed


def test_service_flow_lists_open_orders_and_alerts_on_orphans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's open-order check against the local exchange, wired from its config:
    our orders.events say one order is open; the exchange also holds one placed by hand."""
    import asyncio

    from bytewax.testing import run_main

    from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
    from makerflow.flows.common import FlowSettings
    from makerflow.flows.reconcile import ReconFlowConfig, build_flow
    from makerflow.schemas.topics import ORDER_EVENTS
    from makerflow.sinks.exchange import order_event_from_ccxt
    from makerflow.sources.private_stream import PrivateStreamConfig

    monkeypatch.setenv("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    replay = REPO / "tests" / "fixtures" / "exchange" / "btcusdt_spot_top_trades_60s.gz"
    with LocalExchange(speed=0, replay=replay) as ex, Broker(log_path=tmp_path / "t.log") as b:
        ex.advance(1)

        async def place() -> list:
            c = ex.client()
            try:
                await c.load_markets()
                ours = await c.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, 50_000, {"clientOrderId": "mf-ours"}
                )
                await c.create_order(
                    "BTC/USDT", "limit", "sell", 0.001, 90_000, {"clientOrderId": "by-hand"}
                )
                return [ours]
            finally:
                await c.close()

        ours = asyncio.run(place())
        brokers = [b.bootstrap]
        ensure_topics(
            brokers,
            [t.name for t in (FILLS, BALANCES, TRANSFERS, ORDER_EVENTS, RECON_REPORTS, ALERTS,
                              DEAD_LETTERS)],
        )  # fmt: skip
        produce_events(
            brokers,
            ORDER_EVENTS,
            [order_event_from_ccxt(o, venue="local", account="main") for o in ours],
        )
        config = ReconFlowConfig(
            open_orders=True,
            exchange=PrivateStreamConfig(
                venue="local", url=ex.url, account="main", symbols=("BTC/USDT",)
            ),
            open_orders_interval_s=0.1,
            open_orders_polls=1,
        )
        run_main(build_flow(FlowSettings(brokers=tuple(brokers), tail=False), config))
        alerts = [ALERTS.codec.decode(m.value()) for m in read_topic(brokers, ALERTS.name)]
    assert [a.name for a in alerts] == ["OpenOrderOrphan"]
    assert "cid=by-hand" in alerts[0].message and "mf-ours" not in alerts[0].message
