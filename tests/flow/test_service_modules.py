"""Every service module builds its ``flow`` from the environment, as ``python -m bytewax.run
makerflow.flows.<svc>:flow`` does, and serves its metrics while doing so."""

from __future__ import annotations

import importlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow

from makerflow.sinks import metrics as metrics_server
from makerflow.sources.kafka import LagReportingKafkaSource

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


def _inputs(step: Any) -> Iterator[tuple[str, Any]]:
    for sub in getattr(step, "substeps", []):
        if hasattr(sub, "source"):
            yield sub.step_id, sub.source
        yield from _inputs(sub)


@pytest.mark.parametrize("service", SERVICES)
def test_every_kafka_input_is_one_topic_so_its_partitions_spread_evenly(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bytewax deals a source's partitions round robin over the workers in the sorted order
    # of their names (makerflow.placement): one topic per source spreads that topic's
    # partitions evenly, and partition p of every topic lands on the same worker. Two topics
    # in one source would interleave ("0-a", "0-b", "1-a", ...): on 2 workers one worker would
    # read all of topic a (tests/integration/test_ops_partition_spread.py runs the spread).
    monkeypatch.setenv("MAKERFLOW_BROKERS", "127.0.0.1:9")
    monkeypatch.setenv("MAKERFLOW_METRICS_PORT", "0")
    flow = importlib.import_module(f"makerflow.flows.{service}").flow
    kafka = [(step, src) for step, src in _inputs(flow) if isinstance(src, KafkaSource)]
    assert kafka, f"{service} reads no Kafka topic"
    for step, src in kafka:
        assert isinstance(src, LagReportingKafkaSource), step
        assert len(src._topics) == 1, f"{step} reads {src._topics} in one source"
