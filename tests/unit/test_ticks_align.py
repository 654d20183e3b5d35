"""Event-time merge of a market's book updates and trades from two streams."""

from __future__ import annotations

import heapq
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.align import TwoStreamMerger
from makerflow.schemas.events import BookDelta, DeadLetter, Trade
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
S = 1_000_000_000


def event_time_order(book: list, trades: list) -> list:
    """The reference: a two-way merge by event time, the book first on ties."""
    return list(heapq.merge(book, trades, key=lambda e: (e.ts, isinstance(e, Trade))))


def interleave(book: list, trades: list, rng: random.Random) -> list:
    """One possible arrival order: each stream in its own order, mixed at random."""
    out, i, j = [], 0, 0
    while i < len(book) or j < len(trades):
        if j >= len(trades) or (i < len(book) and rng.random() < 0.5):
            out.append(book[i])
            i += 1
        else:
            out.append(trades[j])
            j += 1
    return out


def merged(arrivals: list, lag_ns: int | None) -> list:
    m = TwoStreamMerger(lag_ns)
    out = []
    for ev in arrivals:
        out += m.push(ev)
    return out + m.flush()


def test_any_arrival_order_gives_event_time_order_on_real_data() -> None:
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    book = [e for e in events if not isinstance(e, Trade)]
    trades = [e for e in events if isinstance(e, Trade)]
    want = event_time_order(book, trades)
    rng = random.Random(7)
    for arrivals in (
        book + trades,  # the whole book topic read first
        trades + book,  # the whole trades topic read first
        interleave(book, trades, rng),
        interleave(book, trades, rng),
    ):
        assert merged(arrivals, lag_ns=3600 * S) == want


def test_bounded_mode_needs_no_bound_above_the_skew_between_the_topics() -> None:
    """A replay (no lag bound) gives event-time order whatever runs ahead, by how much."""
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    book = [e for e in events if not isinstance(e, Trade)]
    trades = [e for e in events if isinstance(e, Trade)]
    want = event_time_order(book, trades)
    rng = random.Random(11)
    for arrivals in (book + trades, trades + book, interleave(book, trades, rng)):
        assert merged(arrivals, lag_ns=None) == want


def test_live_bound_shorter_than_the_skew_reports_every_late_event() -> None:
    """With a live bound, a topic far ahead of the other releases past the bound: each event
    of the late topic that lands behind what was released is reported, none silently."""
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    book = [e for e in events if not isinstance(e, Trade)]
    trades = [e for e in events if isinstance(e, Trade)]
    m = TwoStreamMerger(max_lag_ns=S)
    out, late = [], []
    for ev in book + trades:  # the whole book topic first: ~50 s ahead of the trades
        out += m.push(ev)
        late += m.take_late()
    out += m.flush()
    assert sorted(out, key=id) == sorted(book + trades, key=id)  # nothing lost
    assert late and all(q.kind == "out_of_order" and "late trade" in q.detail for q in late)
    # Exactly the trades older than the book's last released update when they arrived.
    assert len(late) == sum(1 for t in trades if t.ts < book[-1].ts - S)


def delta(ts: int, seq: int) -> BookDelta:
    return BookDelta(ts=ts, venue="v", symbol="S", first_seq=seq, last_seq=seq)


def trade(ts: int, tid: str) -> Trade:
    return Trade(ts=ts, venue="v", symbol="S", trade_id=tid, price=1.0, qty=1.0, side="buy")


def test_ties_put_the_book_first_and_a_quiet_stream_holds_the_other_up_to_the_lag() -> None:
    m = TwoStreamMerger(max_lag_ns=5 * S)
    t1 = trade(10 * S, "1")
    assert m.push(t1) == []  # no book yet: it may still bring an earlier update
    d1 = delta(10 * S, 1)
    assert m.push(d1) == [d1]  # same time: the book first, the trade waits for a later book
    d2 = delta(11 * S, 2)
    # The trade goes; d2 waits: a trade between 10 s and 11 s may still come.
    assert m.push(d2) == [t1]
    # No trades for a while: book updates wait until the book is 5 s past them.
    held = [delta((12 + i) * S, 3 + i) for i in range(5)]
    released = [m.push(d) for d in held]
    assert released == [[], [], [], [], [d2]]
    d8 = delta(17 * S, 8)
    assert m.push(d8) == [held[0]]
    assert m.flush() == [*held[1:], d8]


def test_state_round_trip() -> None:
    m = TwoStreamMerger(max_lag_ns=S)
    m.push(trade(5, "1"))
    m.push(trade(6, "2"))
    n = TwoStreamMerger(max_lag_ns=S)
    n.restore(m.state())
    d = delta(7, 1)
    assert m.push(d) == n.push(d)
    assert m.flush() == n.flush()
    with pytest.raises(ValueError):
        TwoStreamMerger(-1)


@st.composite
def two_streams_and_an_arrival_order(draw: st.DrawFn) -> tuple[list, list, list]:
    """Two streams each in event-time order (equal times within and across streams), and
    one arrival order that keeps each stream's own order."""
    book_ts = sorted(draw(st.lists(st.integers(0, 50), max_size=30)))
    trade_ts = sorted(draw(st.lists(st.integers(0, 50), max_size=30)))
    book = [delta(ts, i) for i, ts in enumerate(book_ts)]
    trades = [trade(ts, str(i)) for i, ts in enumerate(trade_ts)]
    picks = draw(st.lists(st.booleans(), min_size=len(book) + len(trades)))
    arrivals, i, j = [], 0, 0
    for take_book in picks:
        if i < len(book) and (take_book or j >= len(trades)):
            arrivals.append(book[i])
            i += 1
        elif j < len(trades):
            arrivals.append(trades[j])
            j += 1
    return book, trades, arrivals


@settings(max_examples=300, deadline=None)
@given(two_streams_and_an_arrival_order())
def test_bounded_merge_is_the_event_time_merge_for_every_arrival_order(
    case: tuple[list, list, list],
) -> None:
    book, trades, arrivals = case
    assert merged(arrivals, lag_ns=None) == event_time_order(book, trades)
    m = TwoStreamMerger(None)
    for ev in arrivals:
        m.push(ev)
        assert m.take_late() == []  # nothing is ever late without a bound


@settings(max_examples=300, deadline=None)
@given(two_streams_and_an_arrival_order(), st.integers(1, 20))
def test_live_merge_loses_nothing_and_reports_whatever_it_releases_out_of_order(
    case: tuple[list, list, list], lag: int
) -> None:
    _, _, arrivals = case
    m = TwoStreamMerger(lag)
    out, late = [], 0
    for ev in arrivals:
        out += m.push(ev)
        late += len(m.take_late())
    out += m.flush()
    assert sorted(map(id, out)) == sorted(map(id, arrivals))
    inversions = sum(1 for a, b in itertools.pairwise(out) if b.ts < a.ts)
    assert late >= (1 if inversions else 0)


def test_a_caught_up_stream_releases_what_waited_for_it_one_marker_later() -> None:
    # align_ms of an hour: only the markers can release anything here.
    m = TwoStreamMerger(max_lag_ns=3600 * S)
    d1 = delta(10 * S, 1)
    assert m.push(d1) == []  # a trade before 10 s may still come
    # The first marker may answer a fetch sent before d1 was at the broker: not enough.
    assert m.caught_up(trades=True) == []
    d2 = delta(11 * S, 2)
    assert m.push(d2) == []
    # A marker later, d1 goes; d2 came after the previous marker and waits for the next.
    assert m.caught_up(trades=True) == [d1]
    assert m.caught_up(trades=True) == [d2]
    # A trade older than what went is late: applied as it comes and reported.
    t0 = trade(9 * S, "0")
    assert m.push(t0) == [t0]
    assert [f.kind for f in m.take_late()] == ["out_of_order"]


def test_a_caught_up_book_releases_trades_including_a_tie() -> None:
    m = TwoStreamMerger(max_lag_ns=3600 * S)
    t1 = trade(10 * S, "1")
    assert m.push(t1) == []  # a book update at 10 s would go first
    assert m.caught_up(trades=False) == []
    assert m.caught_up(trades=False) == [t1]
    # The book's own markers never release book updates: d1 waits for a later trade.
    d1 = delta(20 * S, 2)
    assert m.push(d1) == []
    assert m.caught_up(trades=False) == []
    t2 = trade(30 * S, "2")
    assert m.push(t2) == [d1]
    # t2 came after the last book marker: it waits for one more.
    assert m.caught_up(trades=False) == []
    assert m.caught_up(trades=False) == [t2]


@settings(max_examples=200, deadline=None)
@given(two_streams_and_an_arrival_order(), st.integers(1, 20), st.randoms())
def test_markers_anywhere_lose_nothing_and_report_whatever_goes_out_of_order(
    case: tuple[list, list, list], lag: int, rng: random.Random
) -> None:
    _, _, arrivals = case
    m = TwoStreamMerger(lag)
    out, late = [], 0
    for ev in arrivals:
        out += m.push(ev)
        if rng.random() < 0.3:
            out += m.caught_up(trades=rng.random() < 0.5)
        late += len(m.take_late())
    out += m.flush()
    assert sorted(map(id, out)) == sorted(map(id, arrivals))
    inversions = sum(1 for a, b in itertools.pairwise(out) if b.ts < a.ts)
    assert late >= (1 if inversions else 0)


@settings(max_examples=300, deadline=None)
@given(two_streams_and_an_arrival_order())
def test_arrival_order_holds_nothing_and_reports_each_event_behind_the_other_stream(
    case: tuple[list, list, list],
) -> None:
    # max_lag_ns=0 ([ticks] align_ms = 0): each event goes as it arrives, and exactly the
    # ones older than what the other stream already released are reported.
    _, _, arrivals = case
    m = TwoStreamMerger(0)
    latest = {True: -1, False: -1}  # per stream (trades?), the latest time released
    for ev in arrivals:
        assert m.push(ev) == [ev]
        is_trade = isinstance(ev, Trade)
        late = m.take_late()
        assert [f.ts for f in late] == ([ev.ts] if ev.ts < latest[not is_trade] else [])
        assert all(f.kind == "out_of_order" for f in late)
        latest[is_trade] = max(latest[is_trade], ev.ts)
    assert m.flush() == []
