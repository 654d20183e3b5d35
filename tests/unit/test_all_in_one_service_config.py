"""The all-in-one *service* (``makerflow.flows.all_in_one:flow``, built from the environment)
only writes intents to ``orders.intents`` unless its configuration turns ``execute`` on, as
its docstring says; an explicit ``execute = true`` (file or environment) still executes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow

from makerflow.flows import all_in_one


def step_ids(flow: Dataflow) -> Iterator[str]:
    def walk(step: object) -> Iterator[str]:
        for sub in getattr(step, "substeps", []):
            yield sub.step_id
            yield from walk(sub)

    return walk(flow)


def executes(flow: Dataflow) -> bool:
    return any(s.startswith("all_in_one.pipeline_execution") for s in step_ids(flow))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("MAKERFLOW_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_service_from_the_environment_does_not_execute_by_default(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert not executes(all_in_one._flow_from_env())


def test_a_config_file_without_execute_does_not_execute(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "makerflow.toml"
    cfg.write_text("[all_in_one.ticks]\nalign_ms = 50\n")
    clean_env.setenv("MAKERFLOW_CONFIG", str(cfg))
    assert not executes(all_in_one._flow_from_env())


def test_execute_turned_on_explicitly_executes(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("MAKERFLOW__ALL_IN_ONE__EXECUTE", "true")
    assert executes(all_in_one._flow_from_env())
    clean_env.delenv("MAKERFLOW__ALL_IN_ONE__EXECUTE")
    cfg = tmp_path / "makerflow.toml"
    cfg.write_text("[all_in_one]\nexecute = true\n")
    clean_env.setenv("MAKERFLOW_CONFIG", str(cfg))
    assert executes(all_in_one._flow_from_env())
