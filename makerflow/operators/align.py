"""Event-time merge of one market's book updates and trades arriving on two streams (pure).

Two Kafka topics are consumed independently, so the order in which a market's book updates
and trades meet depends on timing. :class:`TwoStreamMerger` restores event-time order: it
holds each stream's events in arrival order and releases the earlier head (ties: the book
first). When only one stream has events waiting, its head goes once the other stream has
shown a later time, or at the end of the input, and:

* **live** (``max_lag_ns`` set: tailing topics that never end): also once its own stream is
  ``max_lag_ns`` past it, so a market without trades never stalls its book for longer than
  that. An event of the other stream older than what was already released is *late*: it is
  applied as it comes and reported (:meth:`TwoStreamMerger.take_late`, a ``DataQuality``
  ``out_of_order`` finding), never merged silently out of order;
* **bounded** (``max_lag_ns=None``: a replay or backtest whose input ends): no time bound at
  all. How far one topic runs ahead of the other (a whole topic produced before the other,
  or consumed minutes ahead at full replay speed) then changes nothing: the output depends
  only on each stream's own order, on every run and any number of workers. The price is
  memory: a market whose other stream is silent holds its events until that stream moves
  or the input ends.

Determinism holds when each stream's events of a market are in event-time order (what the
venue sends and a recording keeps); the late finding reports where that is broken.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from makerflow.schemas.events import BookDelta, BookSnapshot, DataQuality, Trade

MarketData = BookSnapshot | BookDelta | Trade


class TwoStreamMerger:
    def __init__(self, max_lag_ns: int | None) -> None:
        if max_lag_ns is not None and max_lag_ns <= 0:
            raise ValueError(f"max_lag_ns must be > 0 (or None: no bound), got {max_lag_ns}")
        self.max_lag = max_lag_ns
        self.book: deque[MarketData] = deque()
        self.trades: deque[MarketData] = deque()
        self.book_seen = -1
        """Latest event time seen on the book stream."""
        self.trades_seen = -1
        self.released = -1
        """Latest event time released."""
        self._late: list[DataQuality] = []
        # What the other stream had shown at each stream's previous caught-up marker.
        self._book_mark = -1
        self._trades_mark = -1

    def push(self, ev: MarketData) -> list[MarketData]:
        """Take one event; return the events now safe to process, in event-time order."""
        if ev.ts < self.released:
            self._late.append(_late_finding(ev, self.released))
        if isinstance(ev, Trade):
            self.trades.append(ev)
            if ev.ts > self.trades_seen:
                self.trades_seen = ev.ts
        else:
            self.book.append(ev)
            if ev.ts > self.book_seen:
                self.book_seen = ev.ts
        return self._release(final=False)

    def caught_up(self, trades: bool) -> list[MarketData]:
        """The trades stream's source (``trades``) or the book's says it has nothing pending
        (a :class:`~makerflow.schemas.markers.CaughtUp` marker): the other stream's events
        seen by the *previous* such marker need not wait for it any longer. One marker
        later, not at once: the marker before may come from a fetch sent before those
        events were at the broker; the source sends its markers a whole fetch apart."""
        if trades:
            mark, self._trades_mark = self._trades_mark, self.book_seen
            if mark > self.trades_seen:
                self.trades_seen = mark
        else:
            mark, self._book_mark = self._book_mark, self.trades_seen
            # A trade waits for a book time *past* its own (ties: the book first).
            if mark + 1 > self.book_seen and mark >= 0:
                self.book_seen = mark + 1
        return self._release(final=False)

    def flush(self) -> list[MarketData]:
        """Everything still held, in order (end of input)."""
        return self._release(final=True)

    def take_late(self) -> list[DataQuality]:
        """The findings for late events pushed since the last call."""
        late, self._late = self._late, []
        return late

    def _release(self, final: bool) -> list[MarketData]:
        out: list[MarketData] = []
        book, trades = self.book, self.trades
        # Without a bound the own-stream condition never holds (ts <= -1 is no event time).
        lag = self.max_lag
        book_floor = -1 if lag is None else self.book_seen - lag
        trades_floor = -1 if lag is None else self.trades_seen - lag
        while book or trades:
            if book and trades:
                q = book if book[0].ts <= trades[0].ts else trades
            elif book:
                ts = book[0].ts
                if not (final or ts <= self.trades_seen or ts <= book_floor):
                    break
                q = book
            else:
                ts = trades[0].ts
                if not (final or ts < self.book_seen or ts <= trades_floor):
                    break
                q = trades
            ev = q.popleft()
            if ev.ts > self.released:
                self.released = ev.ts
            out.append(ev)
        return out

    def state(self) -> tuple[Any, ...]:
        return (
            tuple(self.book),
            tuple(self.trades),
            self.book_seen,
            self.trades_seen,
            self.released,
        )

    def restore(self, state: Any) -> None:
        book, trades, self.book_seen, self.trades_seen, *rest = state
        # A snapshot from before ``released`` was kept: nothing later than what either
        # stream had shown can have been released.
        self.released = rest[0] if rest else -1
        self.book = deque(book)
        self.trades = deque(trades)


def _late_finding(ev: MarketData, released: int) -> DataQuality:
    stream = "trade" if isinstance(ev, Trade) else "book update"
    return DataQuality(
        venue=ev.venue,
        symbol=ev.symbol,
        ts=ev.ts,
        kind="out_of_order",
        detail=(
            f"late {stream} for the book/trade merge: {(released - ev.ts) / 1e6:.3f} ms older "
            "than what was already released (applied as it came; raise [ticks] align_ms)"
        ),
    )
