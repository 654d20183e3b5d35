"""Typed events, codecs, the topic registry and configuration models."""

from makerflow.schemas.codec import EventCodec, EventDecodeError, decode_or_dead_letter, encode
from makerflow.schemas.events import *  # noqa: F403
from makerflow.schemas.events import EVENT_TYPES, SCHEMA_VERSION, balance_key, market_key
from makerflow.schemas.topics import TOPICS, Topic, topic

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TOPICS",
    "EventCodec",
    "EventDecodeError",
    "Topic",
    "balance_key",
    "decode_or_dead_letter",
    "encode",
    "market_key",
    "topic",
    *[t.__name__ for t in EVENT_TYPES],
]
