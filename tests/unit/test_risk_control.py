"""``makerflow control`` commands and the metrics HTTP server."""

from __future__ import annotations

import urllib.request

import pytest

from makerflow import metrics
from makerflow.commands.control import build_command, parse_param
from makerflow.sinks.metrics import metrics_port_from_env, serve_metrics


def test_build_commands():
    halt = build_command("halt", "asset:BTC", ts=5, reason="incident", issued_by="alice")
    assert (halt.command, halt.scope, halt.reason, halt.issued_by, halt.ts) == (
        "halt",
        "asset:BTC",
        "incident",
        "alice",
        5,
    )
    s = build_command(
        "set",
        "market:binance:BTC/USDT",
        ts=5,
        params=["max_move_bps=800", "min_orders=10", "max_loss=off"],
    )
    assert s.command == "set_params"
    assert s.params == {"max_move_bps": 800, "min_orders": 10, "max_loss": "off"}
    assert parse_param("x=1.5") == ("x", 1.5) and parse_param("y=true") == ("y", True)


@pytest.mark.parametrize(
    ("verb", "scope", "params", "match"),
    [
        ("resume", "market:BTC", [], "bad scope"),
        ("set", "global", [], "at least one --param"),
        ("halt", "global", ["a=1"], "only goes with control set"),
        ("set", "global", ["novalue"], "name=value"),
        ("pause", "global", [], "unknown control verb"),
    ],
)
def test_bad_commands_say_what_to_do(verb, scope, params, match):
    with pytest.raises(ValueError, match=match):
        build_command(verb, scope, ts=1, params=params)


def test_serve_metrics_is_idempotent_and_serves_the_registry():
    port = serve_metrics(0, "127.0.0.1")
    assert serve_metrics(0) == port and serve_metrics(None) == port
    metrics.KILL_SWITCH_ENGAGED.labels(scope="asset:TESTCOIN").set(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    assert 'makerflow_kill_switch_engaged{scope="asset:TESTCOIN"} 1.0' in body
    metrics.KILL_SWITCH_ENGAGED.remove("asset:TESTCOIN")


def test_metrics_port_from_env():
    assert metrics_port_from_env({}) == 9464
    assert metrics_port_from_env({"MAKERFLOW_METRICS_PORT": "9100"}) == 9100
    with pytest.raises(ValueError, match="not a port"):
        metrics_port_from_env({"MAKERFLOW_METRICS_PORT": "metrics"})
