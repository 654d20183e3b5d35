"""Event-time merge of one market's book updates and trades arriving on two streams (pure).

Two Kafka topics are consumed independently, so the order in which a market's book updates
and trades meet depends on timing. :class:`TwoStreamMerger` (the two-input case of
:class:`~makerflow.operators.event_merge.EventTimeMerger`) restores event-time order: it
holds each stream's events in arrival order and releases the earlier head (ties: the book
first). When only one stream has events waiting, its head goes once the other stream has
shown a later time, or at the end of the input, and:

* **live** (``max_lag_ns`` set: tailing topics that never end): also once its own stream is
  ``max_lag_ns`` past it, so a market without trades never stalls its book for longer than
  that. An event of the other stream older than what was already released is *late*: it is
  applied as it comes and reported (:meth:`TwoStreamMerger.take_late`, a ``DataQuality``
  ``out_of_order`` finding), never merged silently out of order;
* **arrival order** (``max_lag_ns=0``, ``[ticks] align_ms = 0``: the low-latency profile):
  nothing is held, every event goes as it arrives, and one older than what the other stream
  already released is reported late as above;
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

from typing import Any

from makerflow.operators.event_merge import EventTimeMerger
from makerflow.schemas.events import BookDelta, BookSnapshot, DataQuality, Trade

MarketData = BookSnapshot | BookDelta | Trade

_BOOK, _TRADES = 0, 1


class TwoStreamMerger:
    """A market's book updates (first on ties) and trades, by event time."""

    def __init__(self, max_lag_ns: int | None) -> None:
        self.merger: EventTimeMerger[MarketData] = EventTimeMerger(("book", "trades"), max_lag_ns)
        self.max_lag = max_lag_ns
        # What the other stream had shown at each stream's previous caught-up marker.
        self._book_mark = -1
        self._trades_mark = -1

    def push(self, ev: MarketData) -> list[MarketData]:
        """Take one event; return the events now safe to process, in event-time order."""
        return self.merger.push(_TRADES if type(ev) is Trade else _BOOK, ev.ts, ev)

    def caught_up(self, trades: bool) -> list[MarketData]:
        """The trades stream's source (``trades``) or the book's says it has nothing pending
        (a :class:`~makerflow.schemas.markers.CaughtUp` marker): the other stream's events
        seen by the *previous* such marker need not wait for it any longer. One marker
        later, not at once: the marker before may come from a fetch sent before those
        events were at the broker; the source sends its markers a whole fetch apart."""
        m = self.merger
        if trades:
            mark, self._trades_mark = self._trades_mark, m.seen[_BOOK]
            return m.advance(_TRADES, mark) if mark >= 0 else []
        mark, self._book_mark = self._book_mark, m.seen[_TRADES]
        # A trade waits for a book time *past* its own (ties: the book first).
        return m.advance(_BOOK, mark + 1) if mark >= 0 else []

    def flush(self) -> list[MarketData]:
        """Everything still held, in order (end of input)."""
        return self.merger.flush()

    def take_late(self) -> list[DataQuality]:
        """The findings for late events pushed since the last call."""
        return [_late_finding(ev, released) for _, ev, released in self.merger.take_late()]

    def state(self) -> tuple[Any, ...]:
        return self.merger.state()

    def restore(self, state: Any) -> None:
        if len(state) == 5 and state[0] != self.merger.inputs:
            # A snapshot of the two-queue merger this one replaced: (book, trades, book
            # seen, trades seen, released); its queues held events without merge times.
            book, trades, book_seen, trades_seen, released = state
            m = self.merger
            m.queues[_BOOK].extend(_timed(book))
            m.queues[_TRADES].extend(_timed(trades))
            m.seen = [book_seen, trades_seen]
            m.shown = list(m.seen)
            m.released = released
            return
        self.merger.restore(state)


def _timed(events: tuple[MarketData, ...]) -> list[tuple[int, MarketData]]:
    out, mts = [], -1
    for ev in events:
        mts = max(mts, ev.ts)
        out.append((mts, ev))
    return out


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
