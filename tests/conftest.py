"""Shared fixtures: a real Kafka-protocol broker on loopback, and Bytewax run modes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

from makerflow.broker import Broker

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One tansu broker (memory storage) for the whole session, on a free loopback port."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with Broker(log_path=log) as b:
        yield b


_topic_ids = itertools.count()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique topic names per test, so tests on the shared broker never see each other."""

    def make(name: str) -> str:
        return f"{name}.t{next(_topic_ids)}"

    return make


# A zero epoch interval snapshots state at every epoch, so recovery tests can resume from
# exactly where a run stopped; flows without recovery are unaffected.
RUNNERS: dict[str, Callable[[Dataflow], None]] = {
    "run_main": lambda flow: run_main(flow, epoch_interval=timedelta(0)),
    "cluster_1": lambda flow: cluster_main(
        flow, [], 0, epoch_interval=timedelta(0), worker_count_per_proc=1
    ),
    "cluster_2": lambda flow: cluster_main(
        flow, [], 0, epoch_interval=timedelta(0), worker_count_per_proc=2
    ),
}


@pytest.fixture(params=list(RUNNERS))
def run_flow(request: pytest.FixtureRequest) -> Callable[[Dataflow], None]:
    """Runs a flow under run_main, and under cluster_main with one and with two workers."""
    return RUNNERS[request.param]
