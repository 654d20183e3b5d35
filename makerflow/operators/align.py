"""Event-time merge of one market's book updates and trades arriving on two streams (pure).

Two Kafka topics are consumed independently, so the order in which a market's book updates
and trades meet depends on timing. :class:`TwoStreamMerger` restores event-time order: it
holds each stream's events in arrival order and releases the earlier head (ties: the book
first). When only one stream has events waiting, its head goes once the other stream has
shown a later time, or once its own stream is ``max_lag_ns`` past it (so a market without
trades never stalls its book for longer than that), or at the end of the input.

With ``max_lag_ns`` longer than the skew between the two streams the output depends only on
each stream's own order, so a replay gives the same ticks on every run.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from makerflow.schemas.events import BookDelta, BookSnapshot, Trade

MarketData = BookSnapshot | BookDelta | Trade


class TwoStreamMerger:
    def __init__(self, max_lag_ns: int) -> None:
        if max_lag_ns <= 0:
            raise ValueError(f"max_lag_ns must be > 0, got {max_lag_ns}")
        self.max_lag = max_lag_ns
        self.book: deque[MarketData] = deque()
        self.trades: deque[MarketData] = deque()
        self.book_seen = -1
        """Latest event time seen on the book stream."""
        self.trades_seen = -1

    def push(self, ev: MarketData) -> list[MarketData]:
        """Take one event; return the events now safe to process, in event-time order."""
        if isinstance(ev, Trade):
            self.trades.append(ev)
            if ev.ts > self.trades_seen:
                self.trades_seen = ev.ts
        else:
            self.book.append(ev)
            if ev.ts > self.book_seen:
                self.book_seen = ev.ts
        return self._release(final=False)

    def flush(self) -> list[MarketData]:
        """Everything still held, in order (end of input)."""
        return self._release(final=True)

    def _release(self, final: bool) -> list[MarketData]:
        out: list[MarketData] = []
        book, trades = self.book, self.trades
        lag = self.max_lag
        while book or trades:
            if book and trades:
                q = book if book[0].ts <= trades[0].ts else trades
            elif book:
                ts = book[0].ts
                if not (final or ts <= self.trades_seen or ts <= self.book_seen - lag):
                    break
                q = book
            else:
                ts = trades[0].ts
                if not (final or ts < self.book_seen or ts <= self.trades_seen - lag):
                    break
                q = trades
            out.append(q.popleft())
        return out

    def state(self) -> tuple[Any, ...]:
        return (tuple(self.book), tuple(self.trades), self.book_seen, self.trades_seen)

    def restore(self, state: Any) -> None:
        book, trades, self.book_seen, self.trades_seen = state
        self.book = deque(book)
        self.trades = deque(trades)
