"""One copy of each of our fills, whichever path brought it first.

A fill reaches us by more than one path: the private stream's websocket, its REST catch-up,
and execution's periodic sweep of the venue's recent trades. Every consumer applies a fill once
per (venue, trade id) already (the order state), but a topic or file that people and other
systems read should hold each trade once too. :func:`unique_fills` keeps the first copy of each
trade id per market and drops the rest, counting them.

Memory: the last ``memory`` trade ids per market (a repeat older than that would pass; the
consumers still drop it).
"""

from __future__ import annotations

from collections.abc import Iterable

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.bounded_set import BoundedSet
from makerflow.schemas.events import Fill

DEFAULT_MEMORY = 100_000


class FirstFills:
    """Pure: which fills of one market are new (by trade id)."""

    def __init__(self, memory: int = DEFAULT_MEMORY, seen: Iterable[object] = ()) -> None:
        self._seen = BoundedSet(memory, seen)
        self.memory = memory

    def first(self, fill: Fill) -> bool:
        """True the first time a trade id is seen."""
        if fill.trade_id in self._seen:
            return False
        self._seen.add(fill.trade_id)
        return True

    def snapshot(self) -> tuple[object, ...]:
        return self._seen.items()


class _FirstFillsLogic(StatefulLogic[Fill, Fill, tuple[object, ...]]):
    def __init__(self, step: str, memory: int, resume: tuple[object, ...] | None) -> None:
        self.logic = FirstFills(memory, resume or ())
        self._repeats = metrics.REPEATED_FILLS.labels(step=step)

    def on_item(self, value: Fill) -> tuple[Iterable[Fill], bool]:
        if self.logic.first(value):
            return (value,), StatefulLogic.RETAIN
        self._repeats.inc()
        return (), StatefulLogic.RETAIN

    def snapshot(self) -> tuple[object, ...]:
        return self.logic.snapshot()


def _market(fill: Fill) -> str:
    return fill.key


@operator
def unique_fills(step_id: str, fills: Stream[Fill], memory: int = DEFAULT_MEMORY) -> Stream[Fill]:
    """Each trade once per market (keyed by ``venue:symbol``), in the order first seen."""
    keyed = op.key_on("key", fills, _market)
    firsts = op.stateful("first", keyed, lambda resume: _FirstFillsLogic(step_id, memory, resume))
    return op.key_rm("unkey", firsts)
