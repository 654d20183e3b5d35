"""The N-input event-time merge: any arrival order of the inputs' events (each input in its
own order), with end markers anywhere after an input's last event, releases one sequence."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from bytewax.operators import StatefulLogic
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.event_merge import EventTimeMerger
from makerflow.operators.merge_logic import (
    Ended,
    MergedState,
    MergingLogic,
    StageEnded,
    fan_out_stage_ends,
    known_or,
)

INPUTS = ("orders", "fills", "risk", "control", "ticks")


@dataclass(frozen=True)
class Ev:
    input: str
    pos: int
    ts: int


Step = tuple[str, object]
"""``("event", Ev)`` or ``("end", (input, partition, partitions))``."""


@st.composite
def inputs_and_arrivals(draw: st.DrawFn) -> tuple[dict[str, list[Ev]], dict[str, int], list]:
    """Every input's events (event times drawn with repeats; sorted or not: the merge keeps
    each input's own order either way), its partition count, and one arrival order that
    keeps each input's order and sends each partition's end marker after the input's last
    event (an input with no events may end at once, like an empty ``control`` topic)."""
    streams: dict[str, list[Ev]] = {}
    parts: dict[str, int] = {}
    for name in INPUTS:
        ts = draw(st.lists(st.integers(0, 30), max_size=12))
        if draw(st.booleans()):
            ts.sort()
        streams[name] = [Ev(name, i, t) for i, t in enumerate(ts)]
        parts[name] = draw(st.integers(1, 3))
    pending: dict[str, list[Step]] = {
        n: [("event", e) for e in evs] + [("end", (n, p, parts[n])) for p in range(parts[n])]
        for n, evs in streams.items()
    }
    arrivals: list[Step] = []
    while any(pending.values()):
        live = [n for n in INPUTS if pending[n]]
        name = draw(st.sampled_from(live))
        arrivals.append(pending[name].pop(0))
    return streams, parts, arrivals


def run(arrivals: list[Step], flush_at_end: bool = True) -> list[Ev]:
    m: EventTimeMerger[Ev] = EventTimeMerger(INPUTS)
    out: list[Ev] = []
    for kind, x in arrivals:
        if kind == "event":
            assert isinstance(x, Ev)
            out += m.push(x.input, x.ts, x)
        else:
            name, part, n = x  # type: ignore[misc]
            out += m.end(name, part, n)
    if flush_at_end:
        out += m.flush()
    assert m.take_late() == []  # without a lag bound nothing is ever late
    return out


def reference(streams: dict[str, list[Ev]]) -> list[Ev]:
    """By merge time (each input's running maximum), then input order, then position."""
    keyed = []
    for rank, name in enumerate(INPUTS):
        mts = -1
        for e in streams[name]:
            mts = max(mts, e.ts)
            keyed.append(((mts, rank, e.pos), e))
    return [e for _, e in sorted(keyed, key=lambda kv: kv[0])]


@settings(max_examples=100, deadline=None)
@given(inputs_and_arrivals())
def test_any_interleaving_with_end_markers_releases_the_same_sequence(
    case: tuple[dict[str, list[Ev]], dict[str, int], list[Step]],
) -> None:
    streams, _, arrivals = case
    want = reference(streams)
    # Every input ended: everything is out without the final flush.
    assert run(arrivals, flush_at_end=False) == want
    # The same events in input order (each whole input at once, markers last) and in
    # reverse input order give the same sequence.
    for order in (INPUTS, INPUTS[::-1]):
        one_by_one = [s for name in order for s in arrivals if _of(s) == name]
        assert run(one_by_one) == want


@settings(max_examples=50, deadline=None)
@given(inputs_and_arrivals(), st.integers(0, 60))
def test_snapshot_and_restore_anywhere_gives_the_same_sequence(
    case: tuple[dict[str, list[Ev]], dict[str, int], list[Step]], cut: int
) -> None:
    streams, _, arrivals = case
    cut = min(cut, len(arrivals))
    first: EventTimeMerger[Ev] = EventTimeMerger(INPUTS)
    out: list[Ev] = []
    for step in arrivals[:cut]:
        out += _apply(first, step)
    second: EventTimeMerger[Ev] = EventTimeMerger(INPUTS)
    second.restore(first.state())
    for step in arrivals[cut:]:
        out += _apply(second, step)
    assert out + second.flush() == reference(streams)


def test_an_input_that_has_not_ended_holds_the_others_and_flush_releases_in_order() -> None:
    m: EventTimeMerger[Ev] = EventTimeMerger(("a", "b"))
    a1, a2, b1 = Ev("a", 0, 5), Ev("a", 1, 9), Ev("b", 0, 7)
    assert m.push("a", 5, a1) == []  # b may still send something earlier
    assert m.push("a", 9, a2) == []
    assert m.push("b", 7, b1) == [a1, b1]  # b is at 7 and a at 9: a2 waits for b
    assert m.end("b", 0, 2) == []  # one partition of two
    assert m.end("b", 0, 2) == []  # a repeated marker changes nothing
    assert m.end("b", 1, 2) == [a2]  # b has ended: nothing can come before a2
    b2 = Ev("b", 1, 3)
    m2: EventTimeMerger[Ev] = EventTimeMerger(("a", "b"))
    m2.push("a", 5, a1)
    m2.push("b", 3, b2)
    assert m2.held == 1 and m2.flush() == [a1]
    with pytest.raises(ValueError):
        EventTimeMerger(("a", "a"))
    with pytest.raises(ValueError):
        EventTimeMerger(("a",)).restore(EventTimeMerger(("b",)).state())


def _of(step: Step) -> str:
    kind, x = step
    return x.input if kind == "event" else x[0]  # type: ignore[attr-defined,index,return-value]


def _apply(m: EventTimeMerger[Ev], step: Step) -> list[Ev]:
    kind, x = step
    if kind == "event":
        assert isinstance(x, Ev)
        return m.push(x.input, x.ts, x)
    name, part, n = x  # type: ignore[misc]
    return m.end(name, part, n)


class Collect(StatefulLogic[Ev, int, tuple[int, ...]]):
    """An inner logic that emits the position of every event it is fed, in order."""

    def __init__(self, resume: tuple[int, ...] | None) -> None:
        self.seen = list(resume or ())

    def on_item(self, value: Ev) -> tuple[list[int], bool]:
        self.seen.append(value.pos)
        return [value.pos], StatefulLogic.RETAIN

    def snapshot(self) -> tuple[int, ...]:
        return tuple(self.seen)


def test_the_step_releases_on_end_markers_before_the_end_of_input_and_resumes() -> None:
    def logic(resume: MergedState | None) -> MergingLogic:
        return MergingLogic(lambda _v: ("a", "b"), lambda e: e.input, Collect, resume)

    step = logic(None)
    assert list(step.on_item(Ev("a", 0, 5))[0]) == []  # b may still send something earlier
    assert list(step.on_item(Ended("b", 1, 2))[0]) == []  # one of b's two partitions
    resumed = logic(step.snapshot())  # a crash here: the held event is in the snapshot
    assert list(resumed.on_item(Ended("b", 0, 2))[0]) == [0]  # b ended: a's event goes
    assert list(resumed.on_item(Ev("a", 1, 9))[0]) == [1]
    assert list(resumed.on_eof()[0]) == []
    assert resumed.snapshot().inner == (0, 1)


def test_a_live_step_resumes_a_replays_held_events_first_then_passes_items_through() -> None:
    replay = MergingLogic(lambda _v: ("a", "b"), lambda e: e.input, Collect, None)
    assert list(replay.on_item(Ev("a", 0, 5))[0]) == []  # held: b has not ended
    live = MergingLogic(
        lambda _v: ("a", "b"), lambda e: e.input, Collect, replay.snapshot(), merge=False
    )
    assert list(live.on_item(Ev("b", 7, 1))[0]) == [0, 7]  # the held event first
    assert list(live.on_item(Ev("a", 1, 0))[0]) == [1]  # then arrival order, no waiting
    assert list(live.on_item(Ended("b", 0, 1))[0]) == []
    assert live.snapshot() == MergedState((0, 7, 1), None)
    # A snapshot of the inner logic alone (written before the merge existed) resumes too.
    old = MergingLogic(lambda _v: ("a",), lambda e: e.input, Collect, (3, 4))  # type: ignore[arg-type]
    assert list(old.on_item(Ev("a", 5, 1))[0]) == [5] and old.snapshot().inner == (3, 4, 5)


def test_a_stage_says_it_ended_after_its_last_release_once_and_the_next_stage_merges_on() -> None:
    """Stage one (inputs a, b) says StageEnded once both ended, after what that released;
    stage two merges stage one's key ``k1`` with its own input c in event time and, told
    ``k1`` ended, goes on without waiting for the end of the whole input. Its catch-all
    (an upstream key nobody configured) starts ended and holds no one up."""
    first = MergingLogic(lambda _v: ("a", "b"), lambda e: e.input, Collect, None, tell_end=True)
    assert list(first.on_item(Ev("a", 0, 5))[0]) == []
    assert list(first.on_item(Ended("a", 0, 1))[0]) == []
    assert list(first.on_item(Ended("b", 0, 1))[0]) == [0, StageEnded()]
    assert list(first.on_item(Ended("b", 0, 1))[0]) == []  # a repeat says nothing again

    route = fan_out_stage_ends(lambda name, x: [("k2", (name, x))], lambda: ["k2"])
    assert route(("s1@k1", StageEnded())) == [("k2", ("", Ended("s1@k1", 0, 1)))]

    inputs = ("c", "s1@k1", "other")
    second = MergingLogic(
        lambda _v: inputs,
        known_or(inputs, "other"),
        Collect,
        None,
        unwrap=lambda x: x[1],
        strip=lambda x: x[1],
        ended=("other",),
    )
    assert list(second.on_item(("s1@k1", Ev("s1@k1", 1, 7)))[0]) == []  # c may come earlier
    assert list(second.on_item(("c", Ev("c", 2, 6)))[0]) == [2]
    assert list(second.on_item(("c", Ev("c", 3, 9)))[0]) == [1]
    assert list(second.on_item(("s1@k9", Ev("s1@k9", 4, 10)))[0]) == []  # catch-all: held
    (_, ended), *_ = route(("s1@k1", StageEnded()))
    assert list(second.on_item(ended)[0]) == [3]  # k1 ended: c's 9 goes, before the 10
    assert list(second.on_item(("", Ended("c", 0, 1)))[0]) == [4]
