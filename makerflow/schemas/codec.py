"""JSON codecs for events: one encoder, one decoder per value type, and the dead-letter path.

Decoding is the only place raw bytes from outside become events; whatever fails here becomes a
:class:`DeadLetter` carrying the raw bytes and a reason a person can act on.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from makerflow.schemas.events import SCHEMA_VERSION, DeadLetter, Event

E = TypeVar("E")

_ENCODER = msgspec.json.Encoder()


class _VersionOnly(msgspec.Struct):
    v: Any = None


_VERSION_PROBE = msgspec.json.Decoder(_VersionOnly)


class EventDecodeError(ValueError):
    """Raw bytes that are not a valid event of the expected type."""


def encode(event: msgspec.Struct) -> bytes:
    """The JSON encoding of an event (the Kafka value)."""
    return _ENCODER.encode(event)


class EventCodec(Generic[E]):
    """Decodes and validates one value type (a Struct or a union of tagged Structs)."""

    __slots__ = ("_decoder", "type")

    def __init__(self, value_type: Any) -> None:
        self.type = value_type
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(value_type)

    def decode(self, raw: bytes) -> E:
        """Decode ``raw`` or raise :class:`EventDecodeError` saying what is wrong."""
        try:
            event = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise EventDecodeError(_validation_reason(raw, exc)) from None
        except msgspec.DecodeError as exc:
            raise EventDecodeError(_decode_reason(raw, exc)) from None
        version = getattr(event, "v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise EventDecodeError(_version_reason(version))
        return event

    encode = staticmethod(encode)


def _version_reason(version: object) -> str:
    return (
        f"unsupported schema version {version!r}: this reader understands v{SCHEMA_VERSION};"
        " upgrade the reader or re-encode the event"
    )


def _validation_reason(raw: bytes, exc: msgspec.ValidationError) -> str:
    # A message of another schema version usually also fails field validation; name the
    # version as the cause since that is what the producer must fix.
    try:
        version = _VERSION_PROBE.decode(raw).v
    except (msgspec.DecodeError, msgspec.ValidationError):
        version = SCHEMA_VERSION
    if version is not None and version != SCHEMA_VERSION:
        return _version_reason(version)
    return f"invalid event: {exc}"


def _decode_reason(raw: bytes, exc: msgspec.DecodeError) -> str:
    if not raw:
        return "empty value: expected a JSON-encoded event"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return f"value is not UTF-8 ({uexc.reason} at byte {uexc.start}): expected JSON"
    return f"malformed JSON: {exc}"


def dead_letter(
    step: str,
    reason: str,
    raw: bytes | None,
    *,
    ts: int,
    key: bytes | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> DeadLetter:
    """A dead letter for input that failed at ``step``."""
    return DeadLetter(
        ts=ts,
        step=step,
        reason=reason,
        raw=raw or b"",
        key=key,
        topic=topic,
        partition=partition,
        offset=offset,
    )


def decode_or_dead_letter(
    codec: EventCodec[E],
    step: str,
    raw: bytes | None,
    *,
    ts: int,
    key: bytes | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> E | DeadLetter:
    """The event in ``raw``, or a dead letter saying why there is none."""
    try:
        return codec.decode(raw or b"")
    except EventDecodeError as exc:
        return dead_letter(
            step,
            str(exc),
            raw,
            ts=ts,
            key=key,
            topic=topic,
            partition=partition,
            offset=offset,
        )


def is_event(value: object) -> bool:
    return isinstance(value, Event) and not isinstance(value, DeadLetter)
