"""Every service module builds its ``flow`` from the environment, as ``python -m bytewax.run
makerflow.flows.<svc>:flow`` does, and serves its metrics while doing so."""

from __future__ import annotations

import importlib
import urllib.request
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow

from makerflow.sinks import metrics as metrics_server

SERVICES = ["ticks", "index", "risk", "quoter", "execution", "reconcile", "all_in_one"]


@pytest.mark.parametrize("service", [*SERVICES, "dex_ingest"])
def test_service_flow_builds_from_the_environment(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAKERFLOW_BROKERS", "127.0.0.1:9")
    monkeypatch.setenv("MAKERFLOW_METRICS_PORT", "0")
    if service == "dex_ingest":
        cfg = tmp_path / "dex.toml"
        cfg.write_text('[dex_ingest]\nrpc_url = "http://127.0.0.1:9"\n')
        monkeypatch.setenv("MAKERFLOW_CONFIG", str(cfg))
    module = importlib.import_module(f"makerflow.flows.{service}")
    flow = module.flow
    assert isinstance(flow, Dataflow)
    assert module.flow is flow  # built once
    port = metrics_server.serve_metrics(None)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"makerflow_events_in" in body


def test_unknown_attribute_is_an_attribute_error() -> None:
    module = importlib.import_module("makerflow.flows.ticks")
    with pytest.raises(AttributeError):
        _ = module.no_such_thing
