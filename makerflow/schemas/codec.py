"""JSON codecs for events: one encoder, one decoder per value type, and the dead-letter path.

Decoding is the only place raw bytes from outside become events; whatever fails here becomes a
:class:`DeadLetter` carrying the raw bytes and a reason a person can act on.

The hot path is a single ``msgspec`` decode plus a schema-version compare. Working out *why* a
value failed (empty? not UTF-8? malformed JSON? another schema version?) costs a second parse,
so it happens only on the error path.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

from makerflow.schemas.events import SCHEMA_VERSION, DeadLetter, Event

E = TypeVar("E")

_ENCODER = msgspec.json.Encoder()
_ANY_JSON = msgspec.json.Decoder()

MAX_DEAD_LETTER_RAW = 4 * 1024 * 1024
"""Raw bytes kept in one dead letter. Beyond this the raw value is cut (the reason says so):
a dead letter carries its raw bytes base64-encoded, and one that no broker accepts would be
lost, which is worse than a shortened copy."""


class EventDecodeError(ValueError):
    """Raw bytes that are not a valid event of the expected type."""


def encode(event: msgspec.Struct) -> bytes:
    """The JSON encoding of an event (the Kafka value)."""
    return _ENCODER.encode(event)


def _tag_guard(value_type: Any) -> type[msgspec.Struct] | None:
    """A never-valid tagged struct to decode a single tagged type as a union with.

    msgspec accepts a value without its tag field when it decodes one tagged struct type, but
    requires the tag for a union. Writers must send the tag (``"type": "trade"``) so that any
    reader, including one of a union topic, can tell what a value is; decoding ``T | guard``
    makes msgspec enforce it at no measurable cost.
    """
    config = getattr(value_type, "__struct_config__", None)
    if config is None or config.tag_field is None:
        return None
    # Its ``v`` is never a valid version, so the hot path's single version compare also
    # catches a value that carries the guard's own tag.
    guard: type[msgspec.Struct] = msgspec.defstruct(
        "_TagGuard",
        [("v", Literal[-1], -1)],
        tag_field=config.tag_field,
        tag="\x00makerflow:no-event",
    )
    return guard


class EventCodec(Generic[E]):
    """Decodes and validates one value type (a Struct or a union of tagged Structs)."""

    __slots__ = ("_decoder", "_guard", "type")

    def __init__(self, value_type: Any) -> None:
        self.type = value_type
        self._guard = _tag_guard(value_type)
        decode_as = value_type if self._guard is None else value_type | self._guard
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(decode_as)

    def decode(self, raw: bytes | None) -> E:
        """Decode ``raw`` or raise :class:`EventDecodeError` saying what is wrong.

        ``None`` (a Kafka tombstone) is refused like any other value that is not an event.
        """
        try:
            event = self._decoder.decode(raw)  # type: ignore[arg-type]
        except Exception as exc:
            # ValidationError and DecodeError are the usual failures; msgspec also lets
            # UnicodeDecodeError (bad UTF-8 inside a string) and RecursionError (absurd
            # nesting) through, and none of them may stop a flow.
            raise EventDecodeError(explain_failure(raw, exc)) from None
        if getattr(event, "v", SCHEMA_VERSION) != SCHEMA_VERSION:
            if type(event) is self._guard:
                raise EventDecodeError(
                    f"invalid event: reserved tag value in {(raw or b'')[:80]!r}"
                )
            raise EventDecodeError(_version_reason(getattr(event, "v", None)))
        return event

    encode = staticmethod(encode)


def _version_reason(version: object) -> str:
    return (
        f"unsupported schema version {version!r}: this reader understands v{SCHEMA_VERSION};"
        " upgrade the reader or re-encode the event"
    )


_MAX_DEPTH = 256


def _nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON ``raw`` nests arrays/objects deeper than ``limit`` (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_str = escaped = False
    for byte in raw:
        if in_str:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_str = False
        elif byte == 0x22:
            in_str = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def explain_failure(raw: bytes | None, exc: BaseException) -> str:
    """Why ``raw`` did not decode, most fundamental problem first.

    A value of another schema version usually also fails field validation; the version is
    named as the cause since that is what the producer must fix. A truncated value can fail
    validation before the parser reaches its end, so well-formedness is checked first.
    """
    if raw is None:
        return "null value (a tombstone): expected a JSON-encoded event"
    if not raw:
        return "empty value: expected a JSON-encoded event"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return f"value is not UTF-8 ({uexc.reason} at byte {uexc.start}): expected JSON"
    if _nesting_exceeds(raw, _MAX_DEPTH):
        # Parsing it untyped would recurse once per level, and Bytewax worker threads have
        # small stacks: a hostile value must not crash the process.
        return f"malformed JSON: nested deeper than {_MAX_DEPTH} levels"
    try:
        doc = _ANY_JSON.decode(raw)
    except msgspec.DecodeError as dexc:
        return f"malformed JSON: {dexc}"
    except RecursionError:
        return "malformed JSON: nested too deeply"
    version = doc.get("v") if isinstance(doc, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        return _version_reason(version)
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid event: {exc}"
    return f"invalid event: {type(exc).__name__}: {exc}"


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
    kept = raw or b""
    if len(kept) > MAX_DEAD_LETTER_RAW:
        reason = f"{reason} (raw value cut to its first {MAX_DEAD_LETTER_RAW} of {len(kept)} bytes)"
        kept = kept[:MAX_DEAD_LETTER_RAW]
    return DeadLetter(
        ts=ts,
        step=step,
        reason=reason,
        raw=kept,
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
        return codec.decode(raw)
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
    """True for an event, false for a dead letter or anything else."""
    return isinstance(value, Event) and not isinstance(value, DeadLetter)
