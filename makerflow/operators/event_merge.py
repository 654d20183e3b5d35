"""One key's events from N input streams, put back into event-time order (pure).

Kafka keeps each topic partition in order, but a service reads its topics at their own
pace, so the order in which one key's events of different inputs meet its stateful step
depends on timing. :class:`EventTimeMerger` restores an order that is a function of the data
alone: each input's events in their own order, the inputs interleaved by *merge time* (an
input's running maximum of event time, so an input's own order is never changed: for inputs
in event-time order it is the event time) and, on equal times, by the fixed order of
``inputs``.

An input's head is released when it is the earliest head and no other input can still send
an event that sorts before it: every other input has shown a later time (a later-or-equal
one for inputs after it in the fixed order) or has **ended**. An input ends when every one of
its partitions has said so (:meth:`end`: the bounded Kafka source's
:class:`~makerflow.schemas.markers.InputEnded` markers, or an input that never existed), or
at :meth:`flush` (end of the whole input). So an input that is empty from the start (a
replay without control commands) holds the others only until its markers arrive.

``max_lag_ns`` (live, for the ticks merge only): also release an input's head once the same
input is that far past it, so a quiet input never holds the others longer; an event that
arrives behind what was already released is *late*, released as it comes and reported by
:meth:`take_late`. ``0`` holds nothing: every event goes as it arrives (arrival order, no
added latency), and the late ones are still reported. Without it (``None``, bounded
replays) nothing is ever late and the output does not depend on arrival order
(``tests/unit/test_event_merge.py`` shows it for any interleaving).

The backtest merges its recorded streams with this class too
(:class:`~makerflow.backtest.merge.ChunkMerger`, its streams as inputs in name order), so a
backtest and a replay of the services order one key's events by the same rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class EventTimeMerger(Generic[T]):
    """Merges the inputs named in ``inputs`` (ties go to the one named first)."""

    def __init__(self, inputs: Sequence[str], max_lag_ns: int | None = None) -> None:
        if not inputs or len(set(inputs)) != len(inputs):
            raise ValueError(f"a merge needs distinct input names, got {list(inputs)}")
        if max_lag_ns is not None and max_lag_ns < 0:
            raise ValueError(
                f"max_lag_ns must be >= 0 (0: arrival order; None: no bound), got {max_lag_ns}"
            )
        self.inputs = tuple(inputs)
        self.rank = {name: i for i, name in enumerate(self.inputs)}
        self.groups: dict[str, list[int]] = {}
        """``"risk"`` -> the indexes of ``"risk"`` and of its parts ``"risk|<part>"``."""
        for i, name in enumerate(self.inputs):
            self.groups.setdefault(name.split("|", 1)[0], []).append(i)
        self.max_lag = max_lag_ns
        n = len(self.inputs)
        self.queues: list[deque[tuple[int, T]]] = [deque() for _ in range(n)]
        """Per input, ``(merge time, event)`` held in arrival order."""
        self.seen = [-1] * n
        """Per input, the latest event time it has shown (its merge time)."""
        self.shown = [-1] * n
        """Per input, its latest time or promise (:meth:`advance`): what holds the others."""
        self.ended_parts: list[frozenset[int]] = [frozenset()] * n
        self.done = [False] * n
        """Per input: every partition ended (it holds nobody up any more)."""
        self.released = -1
        """Latest merge time released."""
        self._late: list[tuple[str, T, int]] = []

    def push(self, input: str | int, ts: int, ev: T) -> list[T]:
        """Take event ``ev`` (event time ``ts``) of ``input``; return what is now safe to
        process, in order."""
        i = input if type(input) is int else self.rank[input]  # type: ignore[index]
        seen = self.seen
        if ts > seen[i]:
            seen[i] = ts
            if ts > self.shown[i]:
                self.shown[i] = ts
        mts = seen[i]
        if mts < self.released:
            self._late.append((self.inputs[i], ev, self.released))
        self.queues[i].append((mts, ev))
        return self._release(final=False)

    def end(self, input: str, partition: int = 0, partitions: int = 1) -> list[T]:
        """Partition ``partition`` of ``partitions`` of ``input`` has ended (repeats are
        harmless); once all have, ``input`` (and every part ``input|...`` of it) holds no
        one up. Returns what is now safe.

        Parts: one topic may feed a key from several of its partitions (the quoter gets
        ``risk.state`` of five scopes, each scope on its own partition); only each part is
        in order, so each is its own input (``"risk|global"``), all ended by the topic's
        markers."""
        for i in self.groups.get(input, ()):
            parts = self.ended_parts[i] | {partition}
            self.ended_parts[i] = parts
            if len(parts) >= partitions:
                self.done[i] = True
        return self._release(final=False)

    def advance(self, input: int, ts: int) -> list[T]:
        """``input`` promises nothing earlier than ``ts`` (its source is caught up: see
        :meth:`~makerflow.operators.align.TwoStreamMerger.caught_up`); returns what is now
        safe. An event it sends behind that promise anyway is late. The promise moves no
        merge time (a late event still sorts by its own), and a snapshot does not keep it: a
        restored merge waits for the next one."""
        if ts > self.shown[input]:
            self.shown[input] = ts
        return self._release(final=False)

    def flush(self) -> list[T]:
        """Everything still held, in order (the end of the whole input)."""
        return self._release(final=True)

    def take_late(self) -> list[tuple[str, T, int]]:
        """``(input, event, released time)`` for every late event pushed since the last
        call (only with ``max_lag_ns``)."""
        late, self._late = self._late, []
        return late

    @property
    def held(self) -> int:
        return sum(map(len, self.queues))

    def _release(self, final: bool) -> list[T]:
        out: list[T] = []
        queues, seen, shown, done = self.queues, self.seen, self.shown, self.done
        lag = self.max_lag
        n = len(queues)
        while True:
            best, best_m = -1, 0
            for i in range(n):
                q = queues[i]
                if q and (best < 0 or q[0][0] < best_m):
                    best, best_m = i, q[0][0]
            if best < 0:
                break
            if not final and not (lag is not None and best_m <= seen[best] - lag):
                blocked = False
                for j in range(n):
                    if j == best or done[j]:
                        continue
                    # An input named earlier wins ties, so it must be strictly past.
                    if shown[j] < best_m or (j < best and shown[j] == best_m):
                        blocked = True
                        break
                if blocked:
                    break
            _, ev = queues[best].popleft()
            if best_m > self.released:
                self.released = best_m
            out.append(ev)
        return out

    def state(self) -> tuple[Any, ...]:
        """Small and immutable: the held events, each input's time and ended partitions."""
        return (
            self.inputs,
            tuple(tuple(q) for q in self.queues),
            tuple(self.seen),
            tuple(tuple(sorted(p)) for p in self.ended_parts),
            tuple(self.done),
            self.released,
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        inputs, queues, seen, ended, done, self.released = state
        if tuple(inputs) != self.inputs:
            raise ValueError(f"a merge of {list(inputs)} cannot resume as one of {self.inputs}")
        self.queues = [deque(q) for q in queues]
        self.seen = list(seen)
        self.shown = list(seen)
        self.ended_parts = [frozenset(p) for p in ended]
        self.done = list(done)
