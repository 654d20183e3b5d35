"""A source with nothing in it: the stand-in for an input a flow does not have (no control
topic in an embedded run, no transfers in a backtest), so operators keep one signature."""

from __future__ import annotations

from typing import Any

from bytewax.inputs import DynamicSource, StatelessSourcePartition


class _Nothing(StatelessSourcePartition[Any]):
    def next_batch(self) -> list[Any]:
        raise StopIteration


class EmptySource(DynamicSource[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Nothing:
        return _Nothing()
