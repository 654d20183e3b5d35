"""Each executed market's start, as an item of its own.

The execution step of a market exists once an item of that market reaches it, and its mass
status at start (orphans left by an earlier run, orders and fills missed while it was down)
runs then. A service that starts at the end of an intents topic (``MAKERFLOW_FROM=end``) with
no new intent and no private-stream news would never reconcile, and the orders whose cancels
were made while it was down would stay open. :func:`market_starts` gives every configured
market one :class:`MarketStart` at the start of each run (not recovered: a restart starts
again), which wakes its step.
"""

from __future__ import annotations

from dataclasses import dataclass

from bytewax.inputs import DynamicSource, StatelessSourcePartition


@dataclass(frozen=True)
class MarketStart:
    """A market's execution step should start (and reconcile with the venue) now."""

    key: str
    """``venue:symbol``."""

    @property
    def symbol(self) -> str:
        return self.key.split(":", 1)[1]


class _Once(StatelessSourcePartition[MarketStart]):
    def __init__(self, items: list[MarketStart]) -> None:
        self._items: list[MarketStart] | None = items

    def next_batch(self) -> list[MarketStart]:
        if self._items is None:
            raise StopIteration
        items, self._items = self._items, None
        return items


class MarketStarts(DynamicSource[MarketStart]):
    """One :class:`MarketStart` per market, from the first worker only (each key's step
    lives on one worker; the item is routed there)."""

    def __init__(self, markets: tuple[str, ...]) -> None:
        for m in markets:
            if ":" not in m:
                raise ValueError(f"market {m!r} is not venue:symbol")
        self.markets = markets

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Once:
        return _Once([MarketStart(m) for m in self.markets] if worker_index == 0 else [])
