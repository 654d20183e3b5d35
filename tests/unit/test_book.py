"""The L2 book against a brute-force reference on real recorded Binance data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.book import BookSide, OrderBook
from makerflow.schemas.events import BookDelta, BookSnapshot
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

MD = FIXTURES / "md"
RECORDINGS = {
    "spot": MD / "binance_spot_btcusdt_20240808_head6000.gz",
    "usdm": MD / "binance_usdm_btcusdt_20240808_head2500.gz",
    "coinm": MD / "binance_cm_btcusd_perp_20240808_head1500.gz",
    "bybit": MD / "bybit_xrpusdt-ob500.data.zip",
}


class ReferenceBook:
    """The obvious book: two dicts, best by max/min over all keys, no depth bound."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, ev: BookSnapshot | BookDelta) -> None:
        if isinstance(ev, BookSnapshot):
            self.bids = {p: q for p, q in ev.bids if q > 0}
            self.asks = {p: q for p, q in ev.asks if q > 0}
            return
        for side, levels in ((self.bids, ev.bids), (self.asks, ev.asks)):
            for p, q in levels:
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q

    def top(self) -> tuple[float, float, float, float]:
        b = max(self.bids)
        a = min(self.asks)
        return (b, self.bids[b], a, self.asks[a])

    def levels(self, n: int) -> tuple[tuple[tuple[float, float], ...], ...]:
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return tuple(bids), tuple(asks)


def book_events(kind: str) -> list[BookSnapshot | BookDelta]:
    return [e for e in read_recorded(RECORDINGS[kind]) if isinstance(e, BookSnapshot | BookDelta)]


@pytest.mark.parametrize("kind", ["spot", "usdm", "coinm", "bybit"])
def test_top_of_book_equals_reference_after_every_update(kind: str) -> None:
    events = book_events(kind)
    assert isinstance(events[0], BookSnapshot)
    assert len(events) >= 50
    book = OrderBook("binance", "X")
    ref = ReferenceBook()
    for ev in events:
        findings = book.apply(ev)
        ref.apply(ev)
        assert findings == [], f"real data produced findings at {ev}: {findings}"
        assert book.top() == ref.top()
        assert (book.bids.levels(10), book.asks.levels(10)) == ref.levels(10)
    assert book.seq == events[-1].last_seq  # type: ignore[union-attr]


@pytest.mark.parametrize("depth", [20, 300])
def test_bounded_depth_never_shows_a_wrong_top_on_real_data(depth: int) -> None:
    # BTC moves through 20 dense levels within seconds: the book must notice (a gap finding,
    # no top) rather than show a kept level as the best when a dropped one is better.
    book = OrderBook("binance", "BTC/USDT", max_depth=depth)
    ref = ReferenceBook()
    exhausted = []
    shown = 0
    events = book_events("spot")
    for ev in events:
        exhausted += [f for f in book.apply(ev) if f.kind == "gap"]
        ref.apply(ev)
        assert len(book.bids) <= book.bids.limit and len(book.asks) <= book.asks.limit
        assert book.bids.limit == depth + depth // 4
        top = book.top()
        if top is not None:
            shown += 1
            assert top == ref.top()
    if depth == 20:
        assert exhausted and "eaten through its 20 kept levels" in exhausted[0].detail
    else:
        assert exhausted == [] and shown == len(events)


def snap(seq: int, bids=((100.0, 1.0), (99.0, 2.0)), asks=((101.0, 1.0), (102.0, 2.0)), ts=1):
    return BookSnapshot(ts=ts, venue="v", symbol="S", seq=seq, bids=bids, asks=asks)


def delta(first: int, last: int, bids=(), asks=(), prev: int | None = None, ts: int = 2):
    return BookDelta(
        ts=ts,
        venue="v",
        symbol="S",
        first_seq=first,
        last_seq=last,
        prev_seq=prev,
        bids=bids,
        asks=asks,
    )


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def test_gap_invalidates_reports_and_recovers_with_held_deltas_after_snapshot() -> None:
    book = OrderBook("v", "S", reorder_window=0)
    assert book.apply(snap(10)) == []
    assert book.apply(delta(11, 12, bids=((100.5, 1.0),))) == []
    assert book.top() == (100.5, 1.0, 101.0, 1.0)
    found = book.apply(delta(15, 16, bids=((100.6, 3.0),)))
    assert kinds(found) == ["gap"]
    assert "expected after 12" in found[0].detail
    assert book.top() is None and not book.valid
    # Deltas keep coming while the book waits; they are held, not applied.
    assert book.apply(delta(17, 17, asks=((100.9, 5.0),))) == []
    assert book.top() is None
    # A snapshot at 15 makes 16..17 usable: the held deltas are replayed with the sync rule.
    found = book.apply(snap(15, bids=((100.0, 1.0),), asks=((101.0, 1.0),)))
    assert kinds(found) == ["resync"]
    assert book.valid
    assert book.top() == (100.6, 3.0, 100.9, 5.0)
    assert book.counts["gap"] == 1 and book.counts["resync"] == 1


def test_duplicate_and_stale_deltas_are_ignored_and_counted() -> None:
    book = OrderBook("v", "S")
    book.apply(snap(10))
    d = delta(11, 12, bids=((100.5, 1.0),))
    book.apply(d)
    top = book.top()
    assert kinds(book.apply(d)) == ["duplicate"]
    assert kinds(book.apply(delta(9, 10, bids=((100.9, 9.0),)))) == ["stale"]
    assert book.top() == top
    assert book.counts["duplicate"] == 1 and book.counts["stale"] == 1
    # Nothing was lost: the next delta still applies.
    assert book.apply(delta(13, 13, asks=((100.8, 1.0),))) == []
    assert book.top() == (100.5, 1.0, 100.8, 1.0)


def test_out_of_order_pair_is_repaired_and_reported() -> None:
    book = OrderBook("v", "S", reorder_window=4)
    book.apply(snap(10))
    assert book.apply(delta(12, 12, bids=((100.7, 1.0),))) == []  # held: 11 is missing
    found = book.apply(delta(11, 11, bids=((100.5, 1.0),)))
    assert kinds(found) == ["out_of_order"]
    assert book.valid and book.seq == 12
    assert book.top() == (100.7, 1.0, 101.0, 1.0)
    assert book.bids.levels(2) == ((100.7, 1.0), (100.5, 1.0))


def test_crossed_book_is_reported_once_and_waits_for_a_snapshot() -> None:
    book = OrderBook("v", "S")
    book.apply(snap(10))
    found = book.apply(delta(11, 11, bids=((101.5, 1.0),)))
    assert kinds(found) == ["crossed"]
    assert "bid 101.5 >= ask 101.0" in found[0].detail
    assert book.top() is None
    assert book.apply(delta(12, 12, bids=((101.6, 1.0),))) == []
    assert kinds(book.apply(snap(12))) == ["resync"]
    assert book.top() == (100.0, 1.0, 101.0, 1.0)


def test_crossed_book_can_be_report_only() -> None:
    book = OrderBook("v", "S", invalidate_on_cross=False)
    book.apply(snap(10))
    assert kinds(book.apply(delta(11, 11, bids=((101.5, 1.0),)))) == ["crossed"]
    assert book.valid
    assert book.apply(delta(12, 12, bids=((101.5, 0.0),))) == []
    assert book.top() == (100.0, 1.0, 101.0, 1.0)


def test_futures_prev_id_chain_break_is_a_gap() -> None:
    book = OrderBook("v", "S", reorder_window=0)
    book.apply(snap(100))
    # First after the snapshot straddles it (U <= id <= u), then pu must chain.
    assert book.apply(delta(95, 105, prev=90, bids=((100.5, 1.0),))) == []
    assert book.apply(delta(110, 120, prev=105, asks=((100.9, 1.0),))) == []
    assert kinds(book.apply(delta(130, 140, prev=125))) == ["gap"]


def test_older_snapshot_never_rewinds_a_valid_book() -> None:
    book = OrderBook("v", "S")
    book.apply(snap(10))
    book.apply(delta(11, 20, bids=((100.5, 1.0),)))
    assert kinds(book.apply(snap(15))) == ["stale"]
    assert book.top() == (100.5, 1.0, 101.0, 1.0)


def test_state_round_trip_rebuilds_the_same_book() -> None:
    book = OrderBook("v", "S")
    events = book_events("spot")[:200]
    for ev in events[:100]:
        book.apply(ev)
    copy = OrderBook("v", "S")
    copy.restore(book.state())
    for ev in events[100:]:
        assert book.apply(ev) == copy.apply(ev)
        assert book.top() == copy.top()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=1, max_value=40).map(float),
            st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        ),
        max_size=200,
    )
)
def test_book_side_matches_a_dict_for_any_updates(updates) -> None:
    bids, asks = BookSide(True, 10_000), BookSide(False, 10_000)
    rb: dict[float, float] = {}
    ra: dict[float, float] = {}
    for is_bid, price, qty in updates:
        side, ref = (bids, rb) if is_bid else (asks, ra)
        side.update(price, qty)
        if qty == 0:
            ref.pop(price, None)
        else:
            ref[price] = qty
        assert bids.levels() == tuple(sorted(rb.items(), reverse=True))
        assert asks.levels() == tuple(sorted(ra.items()))
        assert bids.best == (max(rb), rb[max(rb)]) if rb else bids.best is None
