"""The event-time merge inside a Bytewax stateful step, for bounded replays.

A service that reads several topics (the quoter, risk, reconciliation) merges them with
``op.merge``, which interleaves them in arrival order. In a bounded replay
(``MAKERFLOW_TAIL=0``) the operator puts :class:`MergingLogic` between that merge and its
stateful logic: each key's items go through an
:class:`~makerflow.operators.event_merge.EventTimeMerger` and reach the inner logic in an
order that depends on the data alone.

End of input: the bounded Kafka source sends an
:class:`~makerflow.schemas.markers.InputEnded` after each partition's last message; the
operator's routing step turns it into an :class:`Ended` naming the merge input and fans it
out to every key it knows from its configuration (:func:`fan_out_ends`), on the same path as
the topic's events, so it reaches each key after them. An input whose markers never come
(a stream that is not a bounded Kafka read) holds the others until the end of the whole
input, when everything held is released in order: still deterministic, at the cost of
memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bytewax.operators import StatefulLogic

from makerflow.operators.event_merge import EventTimeMerger
from makerflow.schemas.markers import InputEnded


@dataclass(frozen=True, slots=True)
class Ended:
    """Partition ``partition`` (of ``partitions``) of merge input ``input`` has ended."""

    input: str
    partition: int
    partitions: int


@dataclass(frozen=True, slots=True)
class StageEnded:
    """Said by a :class:`MergingLogic` with ``tell_end`` once every input of its key has
    ended, after everything it released: the next stage's routing turns it into an
    :class:`Ended` of the merge input that this key's outputs are there
    (:func:`fan_out_stage_ends`), so a chain of stages merges in event time end to end."""


@dataclass(frozen=True, slots=True)
class MergedState:
    """A :class:`MergingLogic`'s snapshot: the inner logic's (``None`` before its first
    item) and the merger's held events and times."""

    inner: Any
    merge: tuple[Any, ...] | None
    """``None`` when nothing was ever merged (live)."""


def fan_out_ends(
    input: str,
    route: Callable[[Any], list[Any]],
    keys: Callable[[], Sequence[str]],
    wrap: Callable[[str, Ended], Any] = lambda key, e: (key, e),
) -> Callable[[Any], list[Any]]:
    """``route`` for events; an :class:`InputEnded` becomes ``wrap(key, Ended)`` for every
    key in ``keys()`` (every key the stateful step can hold)."""

    def routed(ev: Any) -> list[Any]:
        if type(ev) is InputEnded:
            e = Ended(input, ev.partition, ev.partitions)
            return [wrap(k, e) for k in keys()]
        return route(ev)

    return routed


def fan_out_stage_ends(
    route: Callable[[str, Any], list[Any]], keys: Callable[[], Sequence[str]]
) -> Callable[[tuple[str, Any]], list[Any]]:
    """``route(input, item)`` for a previous stage's outputs tagged ``(input, item)`` (the
    merge input they are in the next stage, one per upstream key); its
    :class:`StageEnded` becomes ``(key, ("", Ended(input, 0, 1)))`` for every key in
    ``keys()``."""

    def routed(tagged: tuple[str, Any]) -> list[Any]:
        name, item = tagged
        if type(item) is StageEnded:
            e = Ended(name, 0, 1)
            return [(k, ("", e)) for k in keys()]
        return route(name, item)

    return routed


def known_or(known: Iterable[str], other: str) -> Callable[[tuple[str, Any]], str]:
    """``input_of`` for tagged items ``(input, event)``: the tag if it is one of ``known``,
    else the catch-all ``other`` (outputs of an upstream key nobody configured, which never
    ends: give it in ``ended`` so it holds no one up)."""
    names = frozenset(known)

    def input_of(tagged: tuple[str, Any]) -> str:
        return tagged[0] if tagged[0] in names else other

    return input_of


def passes_ends(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A ``map`` / ``filter_map`` function that lets an :class:`InputEnded` through as is."""

    def f(x: Any) -> Any:
        return x if type(x) is InputEnded else fn(x)

    return f


class MergingLogic(StatefulLogic[Any, Any, Any]):
    """Feeds ``build(resume)``'s logic one key's items in event-time order.

    ``unwrap(item)`` is the event (or :class:`Ended`) in an item as the step receives it,
    ``input_of(item)`` the merge input it belongs to; ``inputs(item)`` (asked at the key's
    first item) names every input of the key, in tie order; ``strip(item)`` is what the
    inner logic gets (the item itself by default). Inputs in ``ended`` start ended (a
    catch-all that no marker ends); with ``tell_end`` the key says :class:`StageEnded`
    once all its inputs have ended.

    With ``merge=False`` (live) items go straight through, in arrival order. The service may
    switch between the two on the same recovery store: a live snapshot resumes a replay
    with an empty merge, and a replay's held events resume a live run, which feeds them
    first, in their merged order. A snapshot of the inner logic alone (before merges
    existed) resumes as one with nothing held.
    """

    def __init__(
        self,
        inputs: Callable[[Any], Sequence[str]],
        input_of: Callable[[Any], str],
        build: Callable[[Any], StatefulLogic[Any, Any, Any]],
        resume: MergedState | None,
        unwrap: Callable[[Any], Any] | None = None,
        strip: Callable[[Any], Any] | None = None,
        *,
        merge: bool = True,
        ended: Sequence[str] = (),
        tell_end: bool = False,
    ) -> None:
        self.inputs = inputs
        self.ended = tuple(ended)
        self.tell_end = tell_end
        self.strip = strip
        self.merge = merge
        self.merger: EventTimeMerger[Any] | None = None
        self.input_of = input_of
        self.unwrap = unwrap
        inner_resume = resume
        if isinstance(resume, MergedState):
            if resume.merge is not None:
                self.merger = EventTimeMerger(resume.merge[0])
                self.merger.restore(resume.merge)
            inner_resume = resume.inner
        self.inner = build(inner_resume)
        self.fed = inner_resume is not None
        """Whether the inner logic has state to snapshot (an item or a resume)."""

    def _feed(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        if items:
            self.fed = True
            on_item, strip = self.inner.on_item, self.strip
            for item in items:
                out.extend(on_item(item if strip is None else strip(item))[0])
        return out

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        if not self.merge:
            return self._pass(value), StatefulLogic.RETAIN
        m = self.merger
        if m is None:
            m = self.merger = EventTimeMerger(self.inputs(value))
            for name in self.ended:
                m.end(name)
        ev = value if self.unwrap is None else self.unwrap(value)
        if type(ev) is Ended:
            was_done = all(m.done)
            released = m.end(ev.input, ev.partition, ev.partitions)
            if self.tell_end and not was_done and all(m.done):
                out = self._feed(released)
                out.append(StageEnded())
                return out, StatefulLogic.RETAIN
        else:
            name = self.input_of(value)
            if name not in m.rank:
                # A part the configuration does not name (a fill of a market nobody
                # configured): its topic's catch-all input, in arrival order.
                name = name.split("|", 1)[0]
            released = m.push(name, ev.ts, value)
        return self._feed(released), StatefulLogic.RETAIN

    def _pass(self, value: Any) -> Iterable[Any]:
        # Live: the hot path of the quoter and risk, so one call into the inner logic.
        ev = value if self.unwrap is None else self.unwrap(value)
        if self.merger is not None:  # held by a replay before the switch to live
            out = self._feed(self.merger.flush())
            self.merger = None
            if type(ev) is not Ended:
                out.extend(self._feed([value]))
            return out
        if type(ev) is Ended:
            return ()
        self.fed = True
        return self.inner.on_item(value if self.strip is None else self.strip(value))[0]

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if not self.fed:
            return (), StatefulLogic.RETAIN
        return list(self.inner.on_notify()[0]), StatefulLogic.RETAIN

    def notify_at(self) -> Any:
        return self.inner.notify_at() if self.fed else None

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        out = [] if self.merger is None else self._feed(self.merger.flush())
        if self.fed:
            out.extend(self.inner.on_eof()[0])
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> MergedState:
        inner = self.inner.snapshot() if self.fed else None
        return MergedState(inner, None if self.merger is None else self.merger.state())


def input_by_type(
    table: dict[type, str], parts: dict[type, Callable[[Any], str]] | None = None
) -> Callable[[Any], str]:
    """``input_of`` for events whose type says their input; for a type in ``parts``, the
    input is ``"<input>|<part>"`` (``parts[type](event)``: the Kafka key it came with)."""
    by_part = parts or {}

    def input_of(ev: Any) -> str:
        name = table.get(type(ev))
        if name is None:
            raise TypeError(f"no merge input takes a {type(ev).__name__}")
        part = by_part.get(type(ev))
        return name if part is None else f"{name}|{part(ev)}"

    return input_of
