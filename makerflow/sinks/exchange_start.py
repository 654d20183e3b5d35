"""Each executed market's start, as an item of its own.

The execution step of a market exists once an item of that market reaches it, and its mass
status at start (orphans left by an earlier run, orders and fills missed while it was down)
runs then. A service that starts at the end of an intents topic (``MAKERFLOW_FROM=end``) with
no new intent and no private-stream news would never reconcile, and the orders whose cancels
were made while it was down would stay open. :func:`market_starts` gives every configured
market one :class:`MarketStart` at the start of each run (not recovered: a restart starts
again), which wakes its step. :class:`IntentsArrived` decides when the intents from before the run
have all reached it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bytewax.inputs import DynamicSource, StatelessSourcePartition

from makerflow.schemas.events import OrderIntent
from makerflow.schemas.markers import CaughtUp


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


class IntentsArrived:
    """Whether the intents from before this run have all reached a market's start (pure:
    the caller gives the time).

    Certain when an intent of this run came (a market's intents share one partition, in
    order), or, with the topic's markers, once every partition was read to its end. Without
    markers, none coming for ``settle_ms`` after the first is taken as the end: a guess a
    topic that comes in bursts can fool. After ``wait_ms`` the start stops waiting.
    """

    def __init__(
        self, *, started_ns: int, now_ns: int, settle_ms: int, wait_ms: int, marked: bool
    ) -> None:
        self.started_ns = started_ns
        self.created_ns = self.last_ns = now_ns
        self.settle_ns = settle_ms * 1_000_000
        self.wait_ns = wait_ms * 1_000_000
        self.marked = marked
        self.any = False
        self.fresh = False
        self.read_parts: set[int] = set()
        self.all_read = False

    def on_intents(self, intents: Sequence[OrderIntent], now_ns: int) -> None:
        if intents:
            self.any = True
            self.last_ns = now_ns
            self.fresh = self.fresh or any(i.ts >= self.started_ns for i in intents)

    def on_marker(self, marker: CaughtUp) -> None:
        self.read_parts.add(marker.partition)
        self.all_read = self.all_read or len(self.read_parts) >= marker.partitions > 0

    def verdict(self, now_ns: int) -> Literal["arrived", "waited"] | None:
        """``arrived``: all in (or taken to be); ``waited``: ``wait_ms`` passed first."""
        quiet = not self.marked and self.any and now_ns - self.last_ns >= self.settle_ns
        if self.fresh or self.all_read or quiet:
            return "arrived"
        if now_ns - self.created_ns >= self.wait_ns:
            return "waited"
        return None
