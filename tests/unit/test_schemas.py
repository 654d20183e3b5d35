"""Every event survives encode -> decode through every topic that carries it, unchanged."""

from __future__ import annotations

import typing
from types import UnionType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.schemas.codec import EventCodec, encode
from makerflow.schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event, MarketEvent
from makerflow.schemas.topics import TOPICS, Topic
from tests.unit.event_strategies import struct_strategy

# A shared machine: wall-clock deadlines would make these flaky without testing anything.
FAST = settings(deadline=None, max_examples=60)


def carried_types(topic: Topic[Any]) -> tuple[type, ...]:
    vt = topic.value_type
    if isinstance(vt, UnionType) or typing.get_origin(vt) is typing.Union:
        return typing.get_args(vt)
    return (vt,)


def topics_carrying(t: type) -> list[Topic[Any]]:
    return [topic for topic in TOPICS.values() if t in carried_types(topic)]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_every_event_type_has_a_topic(event_type: type[Event]) -> None:
    assert topics_carrying(event_type), f"{event_type.__name__} is on no registered topic"


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_round_trip_through_each_topic_codec(event_type: type[Event]) -> None:
    topics = topics_carrying(event_type)
    own = EventCodec[Any](event_type)

    @FAST
    @given(struct_strategy(event_type))
    def check(event: Event) -> None:
        raw = encode(event)
        assert own.decode(raw) == event
        for topic in topics:
            back = topic.codec.decode(raw)
            assert type(back) is event_type
            assert back == event
            # Re-encoding is byte-identical: replays and reruns compare outputs as bytes.
            assert encode(back) == raw

    check()


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_wire_form_names_type_and_version(event_type: type[Event]) -> None:
    @FAST
    @given(struct_strategy(event_type))
    def check(event: Event) -> None:
        doc = msgspec.json.decode(encode(event))
        assert doc["type"] == msgspec.inspect.type_info(event_type).tag  # type: ignore[attr-defined]
        assert doc["v"] == SCHEMA_VERSION
        assert isinstance(doc["ts"], int)

    check()


def test_tags_are_unique_across_events() -> None:
    tags = [msgspec.inspect.type_info(t).tag for t in EVENT_TYPES]  # type: ignore[attr-defined]
    assert len(tags) == len(set(tags)), tags


def test_events_are_frozen() -> None:
    @FAST
    @given(struct_strategy(EVENT_TYPES[0]))
    def check(event: Event) -> None:
        with pytest.raises(AttributeError):
            event.ts = 0  # type: ignore[misc]

    check()


@pytest.mark.parametrize(
    "topic", [t for t in TOPICS.values() if t.key == "market"], ids=lambda t: t.name
)
def test_market_topics_key_by_venue_and_symbol(topic: Topic[Any]) -> None:
    types = carried_types(topic)
    assert all(issubclass(t, MarketEvent) for t in types)

    @FAST
    @given(st.one_of([struct_strategy(t) for t in types]))
    def check(event: MarketEvent) -> None:
        assert topic.key_of(event) == f"{event.venue}:{event.symbol}"

    check()


@pytest.mark.parametrize(
    "topic", [t for t in TOPICS.values() if t.key == "balance"], ids=lambda t: t.name
)
def test_balance_topics_key_by_account_and_asset(topic: Topic[Any]) -> None:
    @FAST
    @given(st.one_of([struct_strategy(t) for t in carried_types(topic)]))
    def check(event: Any) -> None:
        assert topic.key_of(event) == f"{event.account}:{event.asset}"

    check()
