"""The backtest's stream merge: the order a key sees depends on the data, never on how the
streams' batches interleave on the way (workers, timing), and it is the one ordering rule
(merge time, then stream name, then position) of the services' ``EventTimeMerger`` it runs on."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.backtest.merge import END, Chunk, ChunkMerger, Item, Progress


def _streams(draw: st.DrawFn) -> dict[str, list[int]]:
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    return {
        n: draw(st.lists(st.integers(0, 50), max_size=30))  # event times, not sorted
        for n in names
    }


def batches(
    name: str, times: list[int], sizes: list[int], chunked: bool
) -> list[list[Progress | Chunk]]:
    """A stream as its source sends it: events with the running maximum as merge time, a
    batch at a time (one Chunk, or a Chunk per event and a progress mark), then an end mark."""
    out: list[list[Progress | Chunk]] = []
    mts, i, k = -1, 0, 0
    while i < len(times):
        n = max(1, sizes[k % len(sizes)] if sizes else 1)
        items = []
        for t in times[i : i + n]:
            mts = max(mts, t)
            items.append((mts, i, (name, i)))
            i += 1
        if chunked:
            out.append([Chunk(name, tuple(items), mts)])
        else:
            out.append([*(Chunk(name, (it,), it[0]) for it in items), Progress(name, mts)])
        k += 1
    out.append([Progress(name, END)])
    return out


def merged(
    streams: dict[str, list[int]], sizes: list[int], seed: int, chunked: bool = True
) -> list[Item]:
    """Interleave whole batches of the streams in a random order (each stream's own order
    kept), as Bytewax may deliver them; release as the engine step does."""
    queues = {n: batches(n, t, sizes, chunked) for n, t in streams.items()}
    names = list(streams)
    m = ChunkMerger(names if chunked else names[::-1])  # the names' order given is no rule
    rng = random.Random(seed)
    out: list[Item] = []
    while any(queues.values()):
        name = rng.choice(sorted(n for n, q in queues.items() if q))
        for item in queues[name].pop(0):
            out += m.push(item)
    out += m.flush()
    return out


@settings(max_examples=200, deadline=None)
@given(
    streams=st.composite(_streams)(),
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    sizes2=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    seeds=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_any_interleaving_of_batches_gives_one_order(
    streams: dict[str, list[int]], sizes: list[int], sizes2: list[int], seeds: tuple[int, int]
) -> None:
    items = merged(streams, sizes, seeds[0])
    assert merged(streams, sizes2, seeds[1], chunked=False) == items
    # The one rule: merge time, then stream name, then position in the stream.
    assert items == sorted(items, key=lambda it: (it[0], it[2][0], it[1]))
    a = [ev for _, _, ev in items]
    # Nothing lost or repeated, and each stream's own order is kept.
    assert sorted(a) == sorted((n, i) for n, t in streams.items() for i in range(len(t)))  # type: ignore[type-var]
    for n in streams:
        mine = [i for (s, i) in a if s == n]  # type: ignore[misc]
        assert mine == sorted(mine)


def test_an_event_waits_until_every_other_stream_is_past_it() -> None:
    m = ChunkMerger(("b", "a"))
    a0 = (10, 0, "a0")
    assert m.push(Chunk("a", (a0,), 10)) == []  # b may still send something at 5
    assert m.push(Progress("b", 9)) == []
    # b's next has time >= 10 and sorts after a's on a tie (by name, not by the order given).
    assert m.push(Progress("b", 10)) == [a0]
    b0 = (10, 0, "b0")
    assert m.push(Chunk("b", (b0,), 10)) == []  # a may still send at 10, and a wins ties
    assert m.push(Progress("a", END)) == [b0]
    assert m.flush() == []
