"""Prometheus alerting against real peers: promtool checks and unit-tests the rules, and a
real Prometheus server (Debian package ``prometheus``) scrapes a running risk flow and fires
KillSwitchEngaged when recorded BTCUSDT ticks with an injected 10 % jump reach it through a
real Kafka-protocol broker. ``makerflow control resume`` then releases the kill switch.

promtool and prometheus must be on PATH (``make system-deps`` installs them); these tests fail,
not skip, without them, since the alert rules would otherwise go unchecked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client.metrics import MetricWrapperBase

from makerflow import metrics
from makerflow.broker import Broker, free_port, wait_for_port
from makerflow.commands import control
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.schemas.topics import (
    ALERTS,
    BALANCES,
    CONTROL,
    DEAD_LETTERS,
    FILLS,
    INDEX,
    ORDER_EVENTS,
    ORDER_INTENTS,
    RISK_STATE,
    TICKS,
)
from tests.conftest import REPO
from tests.risk_support import SYMBOL, VENUE, recorded_ticks, with_jump

CONTROL_KEY = "prometheus-test-control-key"
PROM_DIR = REPO / "docker" / "prometheus"
RULES = PROM_DIR / "rules" / "makerflow.rules.yml"
SCOPE = f"market:{VENUE}:{SYMBOL}"

pytestmark = pytest.mark.slow


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: install the Debian package prometheus"
            " (`make system-deps`, or apt-get install prometheus)"
        )
    return path


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False)


def test_promtool_checks_the_rules_and_the_scrape_config():
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert b"SUCCESS: 7 rules found" in out.stdout
    out = run(tool("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_promtool_rule_unit_tests_pass():
    tests = sorted((PROM_DIR / "tests").glob("*.yml"))
    assert tests, "no rule unit tests in docker/prometheus/tests"
    out = run(tool("promtool"), "test", "rules", *map(str, tests))
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_alertmanager_config_is_valid_and_pages_on_critical():
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian package prometheus-alertmanager) is not installed")
    config = str(REPO / "docker" / "alertmanager" / "alertmanager.yml")
    out = run(amtool, "check-config", config)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    routed = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        "alertname=KillSwitchEngaged",
        "severity=critical",
        "team=trading",
    )
    assert routed.stdout.decode().split() == ["pager"]
    routed = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        "alertname=ConsumerLagHigh",
        "severity=warning",
        "team=platform",
    )
    assert routed.stdout.decode().split() == ["platform"]


def test_every_alert_is_defined_on_metrics_makerflow_exports():
    text = RULES.read_text()
    alerts = set(re.findall(r"- alert: (\w+)", text))
    assert alerts == {
        "KillSwitchEngaged",
        "MarketDataStale",
        "BalanceReconciliationBreak",
        "HighOrderRejectRate",
        "IndexOracleDeviation",
        "ConsumerLagHigh",
        "ServiceDown",
    }
    exported: set[str] = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for fam in obj.describe():
            exported.add(fam.name)
            if fam.type == "counter":
                exported.add(fam.name + "_total")
    used = set(re.findall(r"\b(makerflow_\w+)", text))
    assert used, "the rules use no makerflow metric"
    assert used <= exported, f"rules use metrics makerflow does not export: {used - exported}"


# --- live: a running risk flow, scraped by a real Prometheus ---------------------------------


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def wait_for(what: str, check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last saw {last!r}")


def scrape_gauge(text: str, scope: str) -> float | None:
    m = re.search(
        r'^makerflow_kill_switch_engaged\{scope="' + re.escape(scope) + r'"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(m.group(1)) if m else None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of its own: the risk flow reads the real topic names, which other tests on
    the shared broker may also use."""
    with Broker(log_path=tmp_path / "tansu.log") as b:
        yield b


@pytest.fixture
def risk_flow(own_broker: Broker, tmp_path: Path) -> Iterator[int]:
    """``python -m bytewax.run makerflow.flows.risk:flow`` on the broker; yields its metrics
    port."""
    brokers = [own_broker.bootstrap]
    ensure_topics(
        brokers,
        [
            t.name
            for t in (
                TICKS,
                INDEX,
                FILLS,
                ORDER_EVENTS,
                BALANCES,
                CONTROL,
                RISK_STATE,
                ALERTS,
                ORDER_INTENTS,
                DEAD_LETTERS,
            )
        ],
    )
    cfg = tmp_path / "risk.toml"
    cfg.write_text(
        "window_ms = 60000\nslide_ms = 5000\nheartbeat_ms = 500\n\n"
        f'[[markets]]\nvenue = "{VENUE}"\nsymbol = "{SYMBOL}"\n\n'
        "[markets.limits]\nmax_move_bps = 500.0\n\n"
        f'[[markets]]\nvenue = "{VENUE}"\nsymbol = "ETH/USDT"\n'
    )
    port = free_port()
    env = {
        **os.environ,
        "MAKERFLOW_BROKERS": own_broker.bootstrap,
        "MAKERFLOW_CONFIG": str(cfg),
        "MAKERFLOW_METRICS_PORT": str(port),
        "MAKERFLOW_METRICS_ADDR": "127.0.0.1",
        "MAKERFLOW_CONTROL_KEY": CONTROL_KEY,
    }
    log = (tmp_path / "risk.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", "makerflow.flows.risk:flow"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        if proc.returncode not in (0, -15):
            print((tmp_path / "risk.log").read_text()[-4000:])


@pytest.fixture
def prometheus(risk_flow: int, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping the risk flow every 0.5 s with the
    project's rules (KillSwitchEngaged has ``for: 0s``); yields its base URL."""
    tool("prometheus")
    port = free_port()
    rules = tmp_path / "makerflow.rules.yml"
    shutil.copy(RULES, rules)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
        f"rule_files:\n  - {rules}\n"
        "scrape_configs:\n  - job_name: makerflow-risk\n    static_configs:\n"
        f'      - targets: ["127.0.0.1:{risk_flow}"]\n'
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def topic_json(brokers: list[str], name: str) -> list[dict]:
    return [json.loads(m.value()) for m in read_topic(brokers, name, idle=0.5)]


def control_cli(argv: list[str]) -> int:
    """``makerflow control ...`` as the CLI parses and runs it (this command's parser only,
    so a half-written module of another command cannot break this test)."""
    parser = argparse.ArgumentParser(prog="makerflow")
    control.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def firing(base: str, alertname: str) -> list[dict]:
    body = json.loads(http_get(f"{base}/api/v1/alerts"))
    return [
        a
        for a in body["data"]["alerts"]
        if a["labels"].get("alertname") == alertname and a["state"] == "firing"
    ]


@pytest.mark.timeout(90)
def test_prometheus_fires_kill_switch_on_a_live_risk_flow(
    own_broker, risk_flow, prometheus, monkeypatch
):
    monkeypatch.setenv("MAKERFLOW_CONTROL_KEY", CONTROL_KEY)  # makerflow control signs with it
    started = time.monotonic()
    brokers = [own_broker.bootstrap]
    metrics_url = f"http://127.0.0.1:{risk_flow}/metrics"

    # Recorded BTCUSDT ticks moved to end now (live data, not stale), 10 % jump at 1500.
    ticks = recorded_ticks(limit=2_000)
    shift = time.time_ns() - ticks[-1].ts
    ticks = with_jump(recorded_ticks(limit=2_000, ts_shift=shift), 1_500)
    produce_events(brokers, TICKS, ticks)

    def changes() -> list[dict]:
        return [
            s
            for s in (json.loads(m.value()) for m in read_topic(brokers, RISK_STATE.name, idle=0.5))
            if not s.get("heartbeat")
        ]

    # The recorded ticks start half a minute old, so the markets are first PAUSED (stale data,
    # on by default) and come back as the data catches up; the jump then halts BTC/USDT.
    def halts() -> list[dict]:
        return [s for s in changes() if s["status"] == "HALTED"]

    states = wait_for("a HALTED risk state", halts, timeout=30)
    assert [(s["scope"], s["status"]) for s in states] == [(SCOPE, "HALTED")]
    assert states[0]["ts"] - ticks[1_500].ts < 60 * 1_000_000_000
    intents = wait_for(
        "the cancel-all intents", lambda: topic_json(brokers, ORDER_INTENTS.name), 20
    )
    assert ("cancel_all", SYMBOL) in [(i["action"], i["symbol"]) for i in intents]
    assert all(i["action"] == "cancel_all" for i in intents)
    alerts = wait_for("the alert", lambda: topic_json(brokers, ALERTS.name), 20)
    pauses = ("QuotesPaused", "QuotesRestored")
    assert [(a["name"], a["severity"]) for a in alerts if a["name"] not in pauses] == [
        ("KillSwitchEngaged", "critical")
    ]

    # The live scrape: the gauge is at 1 and promtool finds the exposition well formed.
    scrape = http_get(metrics_url)
    assert scrape_gauge(scrape.decode(), SCOPE) == 1.0
    lint = run(tool("promtool"), "check", "metrics", stdin=scrape)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

    # Prometheus scrapes it and fires KillSwitchEngaged for the scope.
    alert = wait_for(
        "KillSwitchEngaged firing", lambda: firing(prometheus, "KillSwitchEngaged"), timeout=20
    )
    assert alert[0]["labels"]["scope"] == SCOPE
    assert alert[0]["labels"]["severity"] == "critical"

    # The jump is still in the window, so the breach holds and a resume would halt again:
    # a person raises the limit (signed, through the control topic), the next ticks clear
    # the breach, then the resume stands; the gauge goes back to 0 and the alert resolves.
    set_cmd = ["control", "set", "--scope", SCOPE, "--param", "max_move_bps=5000"]
    assert control_cli([*set_cmd, "--brokers", own_broker.bootstrap]) == 0
    time.sleep(1.0)
    now = time.time_ns()
    more = recorded_ticks(limit=50)
    produce_events(
        brokers,
        TICKS,
        [msgspec.structs.replace(t, ts=now + i) for i, t in enumerate(with_jump(more, 0))],
    )
    time.sleep(1.0)
    assert (
        control_cli(
            [
                "control",
                "resume",
                "--scope",
                SCOPE,
                "--reason",
                "checked",
                "--brokers",
                own_broker.bootstrap,
            ]
        )
        == 0
    )
    wait_for(
        "the gauge back at 0",
        lambda: scrape_gauge(http_get(metrics_url).decode(), SCOPE) == 0.0,
        timeout=20,
    )
    wait_for(
        "KillSwitchEngaged resolved",
        lambda: not firing(prometheus, "KillSwitchEngaged"),
        timeout=20,
    )

    def btc() -> list[str]:
        return [s["status"] for s in changes() if s["scope"] == SCOPE and s["status"] != "PAUSED"]

    statuses = wait_for("the ACTIVE state", lambda: btc()[-1:] == ["ACTIVE"] and btc(), 20)
    assert statuses[statuses.index("HALTED") :] == ["HALTED", "ACTIVE"]
    assert time.monotonic() - started < 60
