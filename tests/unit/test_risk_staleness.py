"""Market-data staleness: the pure decision, and the wall-clock edge with its clock injected."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from makerflow.operators.staleness import Heartbeat, StalenessMonitor, is_stale
from makerflow.sources.clock import WallClock, to_ns

S = 1_000_000_000


def test_age_is_now_minus_the_newest_event_time():
    m = StalenessMonitor()
    m.on_data(100 * S)
    m.on_data(90 * S)  # an older event does not make the feed fresher
    assert m.age_ns(Heartbeat(103 * S)) == 3 * S
    assert m.age_ns(Heartbeat(99 * S)) == 0  # clock behind the exchange: fresh, not negative
    assert is_stale(3 * S, 2 * S) and not is_stale(2 * S, 2 * S) and not is_stale(10 * S, None)


def test_a_market_that_never_sent_data_ages_from_the_first_silent_heartbeat():
    m = StalenessMonitor()
    assert m.age_ns(Heartbeat(50 * S)) == 0
    assert m.age_ns(Heartbeat(53 * S)) == 3 * S
    m.on_data(52 * S)
    assert m.age_ns(Heartbeat(53 * S)) == 1 * S


class SteppingClock:
    """A clock that moves 10 ms each time it is read (injected: no real time involved)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


def test_wall_clock_source_emits_the_injected_clock_readings():
    start = datetime(2030, 1, 1, tzinfo=UTC)
    flow = Dataflow("clock")
    out: list[Heartbeat] = []
    beats = op.input(
        "clock", flow, WallClock(timedelta(milliseconds=20), SteppingClock(start), limit=4)
    )
    op.output("out", beats, TestingSink(out))
    run_main(flow)
    assert len(out) == 4
    gaps = [b.now - a.now for a, b in itertools.pairwise(out)]
    assert all(g >= 20_000_000 for g in gaps)
    assert out[0].now >= to_ns(start)


def test_to_ns_is_exact():
    assert to_ns(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005_000
