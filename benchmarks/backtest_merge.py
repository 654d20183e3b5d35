"""The backtest's stream merge alone: :class:`~makerflow.backtest.merge.ChunkMerger` (the
services' ``EventTimeMerger`` under the backtest's chunks and progress marks) against the
floor of any merge of sorted streams, ``heapq.merge`` over the whole streams at once (an
offline k-way merge by the same key: merge time, stream name, position), in one process.

Synthetic streams (seeded): N streams of event times rising by 0-2 µs, cut into chunks that
arrive in a random order (each stream's own order kept), as Bytewax delivers a recording's
partitions. The merge's ns per event is what it adds to each event of a backtest (the
engine's own cost is about 100 µs per parsed event, ``benchmarks/backtest.py``).

    python benchmarks/backtest_merge.py
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.backtest.merge import END, Chunk, ChunkMerger, Item, Progress  # noqa: E402

Arrival = list[tuple[str, tuple[Item, ...], int]]


def streams(n: int, per: int, batch: int, seed: int = 1) -> tuple[list[str], Arrival]:
    """``n`` streams of ``per`` events each, as chunks of ``batch`` in a seeded arrival."""
    rng = random.Random(seed)
    chunked: list[list[tuple[str, tuple[Item, ...], int]]] = []
    for s in range(n):
        t, items = 0, []
        for k in range(per):
            t += rng.randint(0, 2_000)
            items.append((t, k, (s, k)))
        chunked.append(
            [
                (f"s{s}", tuple(items[i : i + batch]), items[min(i + batch, per) - 1][0])
                for i in range(0, per, batch)
            ]
        )
    arrival: Arrival = []
    left = [list(reversed(c)) for c in chunked]
    while any(left):
        arrival.append(rng.choice([c for c in left if c]).pop())
    return [f"s{s}" for s in range(n)], arrival


def online(names: list[str], arrival: Arrival) -> list[Any]:
    m = ChunkMerger(names)
    out: list[Item] = []
    for name, items, mts in arrival:
        out += m.push(Chunk(name, items, mts))
    for name in names:
        out += m.push(Progress(name, END))
    out += m.flush()
    return [ev for _, _, ev in out]


def offline(names: list[str], arrival: Arrival) -> list[Any]:
    """The floor: every stream whole, then one k-way merge by the same key."""
    whole: dict[str, list[tuple[int, str, int, Any]]] = {n: [] for n in names}
    for name, items, _ in arrival:
        whole[name].extend((t, name, k, ev) for t, k, ev in items)
    return [ev for _, _, _, ev in heapq.merge(*whole.values())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=400_000, help="events in all (per case)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print("backtest stream merge, best of", args.repeat, "(ns per event)")
    print(f"{'streams':>8} {'chunk':>6} {'ChunkMerger':>12} {'heapq.merge':>12} {'ratio':>7}")
    for n, batch in ((1, 500), (2, 500), (4, 200), (8, 100)):
        names, arrival = streams(n, args.events // n, batch)
        if online(names, arrival) != offline(names, arrival):
            raise SystemExit(f"{n} streams: the merges disagree")
        best = {"online": float("inf"), "offline": float("inf")}
        for _ in range(args.repeat):
            for name, fn in (("online", online), ("offline", offline)):
                started = time.perf_counter()
                fn(names, arrival)
                best[name] = min(best[name], time.perf_counter() - started)
        events = n * (args.events // n)
        on, off = (best[k] * 1e9 / events for k in ("online", "offline"))
        print(f"{n:>8} {batch:>6} {on:>12.0f} {off:>12.0f} {on / off:>6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
