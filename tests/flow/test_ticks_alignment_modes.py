"""The ticks operator's two-stream merge with the shipped configuration, in both modes.

Bounded (a replay): the trades input read as one batch before most of the book, on every
runner, gives the ticks of the event-time merge. Live: a trades input that arrives after
the whole book is past the bound: each of its trades is still applied (a trade tick) and
reported on the quality output as ``out_of_order``, never merged silently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.ticks import TicksConfig, ticks_op
from makerflow.schemas.events import DataQuality, DeadLetter, Tick, Trade
from makerflow.sources.recorded import read_recorded
from tests.flow.test_ticks_flow import FILES, by_market, only, pure
from tests.unit.test_ticks_align import event_time_order

DEFAULT = TicksConfig()


def split(events: list[Any]) -> tuple[list[Any], list[Any]]:
    return [e for e in events if not isinstance(e, Trade)], [
        e for e in events if isinstance(e, Trade)
    ]


def test_bounded_default_gives_event_time_ticks_whatever_runs_ahead(
    run_flow: Callable[[Dataflow], None],
) -> None:
    events = [e for e in read_recorded(FILES[:2]) if not isinstance(e, DeadLetter)]
    book, trades = split(events)
    flow = Dataflow("ticks_bounded")
    b = op.input("book", flow, TestingSource(book, batch_size=3))
    t = op.input("trades", flow, TestingSource(trades, batch_size=len(trades)))
    out = ticks_op("ticks", b, t, DEFAULT, bounded=True)
    got: list[Any] = []
    op.output("t", out.ticks, TestingSink(got))
    run_flow(flow)
    expected = {}
    for key in {e.key for e in events}:
        kb, kt = [e for e in book if e.key == key], [e for e in trades if e.key == key]
        expected[key] = only(pure(event_time_order(kb, kt), DEFAULT), Tick)[key]
    assert by_market(got) == expected


def test_live_default_reports_every_trade_that_arrives_behind_the_bound() -> None:
    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)]
    book, trades = split(events)
    flow = Dataflow("ticks_live_late")
    # One source, the whole book in the first batch and the trades in the next: with a zero
    # epoch interval each batch is its own epoch, so the book is processed first.
    src = op.input("md", flow, TestingSource(book + trades, batch_size=len(book)))
    is_book = op.branch("split", src, lambda e: not isinstance(e, Trade))
    out = ticks_op("ticks", is_book.trues, is_book.falses, DEFAULT)
    ticks: list[Any] = []
    quality: list[Any] = []
    op.output("t", out.ticks, TestingSink(ticks))
    op.output("q", out.quality, TestingSink(quality))
    run_main(flow, epoch_interval=timedelta(0))
    late = [q for q in quality if isinstance(q, DataQuality) and "late trade" in q.detail]
    assert late and all(q.kind == "out_of_order" for q in late)
    # The book is ~50 s ahead: all but the trades of its last 200 ms arrive late.
    bound = book[-1].ts - DEFAULT.align_ms * 1_000_000
    assert len(late) == sum(1 for t in trades if t.ts < bound)
    assert sorted(q.ts for q in late) == sorted(t.ts for t in trades if t.ts < bound)
    # ... and applied: one trade tick per trade, as without the merge.
    assert sum(1 for x in ticks if x.reason == "trade") == sum(
        1 for x in only(pure(book + trades, DEFAULT), Tick)[book[0].key] if x.reason == "trade"
    )


def test_arrival_order_profile_holds_nothing_and_reports_every_trade_behind_the_book() -> None:
    # align_ms = 0, the low-latency profile: nothing waits for the other topic, so each event
    # is applied as it arrives (the ticks of the arrival order), and a trade older than a book
    # update already applied is reported as out_of_order, never silently.
    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)]
    book, trades = split(events)
    arrival = TicksConfig(align_ms=0)
    flow = Dataflow("ticks_arrival_order")
    src = op.input("md", flow, TestingSource(book + trades, batch_size=len(book)))
    is_book = op.branch("split", src, lambda e: not isinstance(e, Trade))
    out = ticks_op("ticks", is_book.trues, is_book.falses, arrival)
    ticks: list[Any] = []
    quality: list[Any] = []
    op.output("t", out.ticks, TestingSink(ticks))
    op.output("q", out.quality, TestingSink(quality))
    run_main(flow, epoch_interval=timedelta(0))
    assert by_market(ticks) == only(pure(book + trades, arrival), Tick)
    late = [q for q in quality if isinstance(q, DataQuality) and q.kind == "out_of_order"]
    assert sorted(q.ts for q in late) == sorted(t.ts for t in trades if t.ts < book[-1].ts)
    assert all("late trade" in q.detail for q in late)
