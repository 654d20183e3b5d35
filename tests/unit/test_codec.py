"""The codec refuses what is not a current, correctly tagged event, and says why; the decoding
step turns every message into exactly one event or one dead letter and counts them exactly."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from confluent_kafka import KafkaError as ConfluentKafkaError
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from makerflow.schemas.codec import (
    MAX_DEAD_LETTER_RAW,
    EventCodec,
    EventDecodeError,
    dead_letter,
    decode_or_dead_letter,
    encode,
)
from makerflow.schemas.events import BookDelta, DeadLetter, Tick, Trade
from makerflow.schemas.topics import DEAD_LETTERS, MD_BOOK, MD_TRADES, TICKS, TOPICS, Topic
from makerflow.sources.kafka import MessageDecoder

TRADE = Trade(
    ts=1_723_161_253_123_000_000,
    venue="binance",
    symbol="BTC/USDT",
    trade_id="3714882345",
    price=61_234.5,
    qty=0.25,
    side="buy",
)
RAW = encode(TRADE)
DELTA = BookDelta(
    ts=1, venue="binance", symbol="BTC/USDT", first_seq=10, last_seq=12, bids=((1.0, 2.0),)
)


def reason(codec: EventCodec[Any], raw: bytes | None) -> str:
    with pytest.raises(EventDecodeError) as info:
        codec.decode(raw)
    return str(info.value)


# --- tags ----------------------------------------------------------------------------------


def test_tag_is_required_on_a_single_type_topic() -> None:
    untagged = RAW.replace(b'"type":"trade",', b"")
    assert "missing required field `type`" in reason(MD_TRADES.codec, untagged)


@pytest.mark.parametrize("topic", [MD_TRADES, MD_BOOK], ids=lambda t: t.name)
def test_wrong_tag_is_refused(topic: Topic[Any]) -> None:
    raw = RAW.replace(b'"type":"trade"', b'"type":"tick"')
    assert "Invalid value 'tick' - at `$.type`" in reason(topic.codec, raw)


def test_union_topic_picks_the_type_by_tag() -> None:
    assert MD_BOOK.codec.decode(encode(DELTA)) == DELTA
    assert "Invalid value 'trade'" in reason(MD_BOOK.codec, RAW)


def test_an_event_of_another_topic_is_refused() -> None:
    tick = Tick(
        ts=1,
        venue="v",
        symbol="s",
        reason="book",
        bid=1,
        bid_qty=1,
        ask=2,
        ask_qty=1,
        mid=1.5,
        microprice=1.5,
        spread_bps=1,
        imbalance=0,
    )
    assert TICKS.codec.decode(encode(tick)) == tick
    assert "Invalid value 'tick'" in reason(MD_TRADES.codec, encode(tick))


def test_the_guard_tag_itself_is_no_event() -> None:
    raw = b'{"type":"\\u0000makerflow:no-event"}'
    assert "reserved tag" in reason(MD_TRADES.codec, raw)
    assert "Invalid enum value 1" in reason(MD_TRADES.codec, raw[:-1] + b',"v":1}')


# --- schema version ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_other_schema_versions_are_refused_by_name(version: int) -> None:
    raw = RAW.replace(b'"v":1', b'"v":%d' % version)
    assert f"unsupported schema version {version}" in reason(MD_TRADES.codec, raw)


def test_version_is_named_even_when_the_shape_also_changed() -> None:
    raw = RAW.replace(b'"v":1', b'"v":2').replace(b'"qty"', b'"quantity"')
    assert "unsupported schema version 2" in reason(MD_TRADES.codec, raw)


def test_a_version_of_the_wrong_type_is_a_validation_error() -> None:
    raw = RAW.replace(b'"v":1', b'"v":"1"')
    assert "`$.v`" in reason(MD_TRADES.codec, raw)


# --- reasons -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "null value"),
        (b"", "empty value"),
        (RAW[:-1], "malformed JSON: Input data was truncated"),
        (RAW[:20], "malformed JSON"),
        (b"\xff" + RAW, "not UTF-8 (invalid start byte at byte 0)"),
        (RAW.replace(b"3714882345", b"37\xe2\x28a"), "not UTF-8"),
        (b"[" * 50_000, "malformed JSON"),
        (RAW.replace(b"61234.5", b"NaN"), "malformed JSON"),
        (RAW.replace(b"61234.5", b'"61234.5"'), "Expected `float`, got `str` - at `$.price`"),
        (RAW.replace(b'"buy"', b'"long"'), "Invalid enum value 'long' - at `$.side`"),
        (RAW.replace(b'"side"', b'"x":1,"side"'), "unknown field `x`"),
        (RAW.replace(b',"qty":0.25', b""), "missing required field `qty`"),
        (b'"a string"', "Expected `object`, got `str`"),
    ],
)
def test_reason_names_the_problem(raw: bytes | None, expected: str) -> None:
    assert expected in reason(MD_TRADES.codec, raw)


def test_truncated_value_on_a_union_topic_is_called_malformed() -> None:
    # msgspec sees the (wrong) tag before the end of the input; the cause is the truncation.
    assert "malformed JSON" in reason(MD_BOOK.codec, RAW[:-3])


def test_decode_or_dead_letter_keeps_origin_and_raw() -> None:
    assert decode_or_dead_letter(MD_TRADES.codec, "s", RAW, ts=5) == TRADE
    dl = decode_or_dead_letter(
        MD_TRADES.codec, "s", b"{", ts=5, key=b"k", topic="t", partition=3, offset=9
    )
    assert isinstance(dl, DeadLetter)
    assert (dl.step, dl.raw, dl.key, dl.topic, dl.partition, dl.offset, dl.ts) == (
        "s",
        b"{",
        b"k",
        "t",
        3,
        9,
        5,
    )
    assert DEAD_LETTERS.codec.decode(encode(dl)) == dl


def test_oversized_raw_is_cut_and_the_reason_says_so() -> None:
    raw = b"x" * (MAX_DEAD_LETTER_RAW + 10)
    dl = dead_letter("s", "malformed JSON", raw, ts=1)
    assert dl.raw == raw[:MAX_DEAD_LETTER_RAW]
    assert f"of {len(raw)} bytes" in dl.reason
    assert dead_letter("s", "r", b"x" * 10, ts=1).raw == b"x" * 10


# --- the decoding step ---------------------------------------------------------------------

_steps = itertools.count()


def message(value: bytes | None, offset: int) -> KafkaSourceMessage[bytes | None, bytes | None]:
    return KafkaSourceMessage(
        key=b"binance:BTC/USDT",
        value=value,
        topic="md.trades",
        partition=2,
        offset=offset,
        timestamp=(1, 1_723_161_253_000),
    )


def counter(name: str, step: str) -> float:
    return REGISTRY.get_sample_value(name, {"step": step}) or 0.0


def test_decoder_emits_one_output_per_message_and_counts_exactly() -> None:
    step = f"unit.decode_{next(_steps)}"
    decoder = MessageDecoder(step, MD_TRADES.codec)
    transport = ConfluentKafkaError(ConfluentKafkaError._TRANSPORT)
    consumer_error = KafkaError(transport, message(b"", 4))
    batch: list[Any] = [
        message(RAW, 0),
        message(b"{", 1),
        message(None, 2),
        message(RAW, 3),
        consumer_error,
    ]

    out = decoder.decode_batch(batch)

    assert len(out) == len(batch)
    assert out[0] == TRADE and out[3] == TRADE
    letters = [x.letter for x in out if not isinstance(x, Trade)]
    assert [dl.offset for dl in letters] == [1, 2, 4]
    assert "malformed JSON" in letters[0].reason
    assert "null value" in letters[1].reason
    assert "kafka consumer error" in letters[2].reason
    assert all(dl.step == step and dl.partition == 2 for dl in letters)
    assert letters[0].ts == 1_723_161_253_000 * 1_000_000
    assert counter("makerflow_events_in_total", step) == 5
    assert counter("makerflow_dead_letters_total", step) == 3

    # One message at a time counts the same.
    assert decoder(message(b"nope", 5)).reason.startswith("malformed JSON")
    assert decoder(message(RAW, 6)) == TRADE
    assert counter("makerflow_events_in_total", step) == 7
    assert counter("makerflow_dead_letters_total", step) == 4


def test_dead_letter_events_read_back_are_events_not_failures() -> None:
    # A flow reading the dead-letter topic must see its values on ``oks``.
    dl = dead_letter("x", "r", b"raw", ts=1)
    step = f"unit.decode_{next(_steps)}"
    out = MessageDecoder(step, DEAD_LETTERS.codec).decode_batch([message(encode(dl), 0)])
    assert out == [dl]
    assert counter("makerflow_dead_letters_total", step) == 0


def test_encoding_is_deterministic_json() -> None:
    assert msgspec.json.decode(RAW)["type"] == "trade"
    assert encode(TRADE) == RAW


# --- nothing crashes ---------------------------------------------------------------------

ANY_TOPIC = st.sampled_from(sorted(TOPICS.values(), key=lambda t: t.name))


@settings(deadline=None, max_examples=300)
@given(topic=ANY_TOPIC, raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_a_decode_error(
    topic: Topic[Any], raw: bytes
) -> None:
    try:
        topic.codec.decode(raw)
    except EventDecodeError as exc:
        assert str(exc)


@settings(deadline=None, max_examples=300)
@given(
    cut=st.integers(min_value=0, max_value=len(RAW)),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(RAW) - 1), st.integers(0, 255)),
        max_size=4,
    ),
)
def test_damaged_events_become_dead_letters_with_the_damaged_bytes(
    cut: int, flips: list[tuple[int, int]]
) -> None:
    damaged = bytearray(RAW)
    for at, byte in flips:
        damaged[at] = byte
    raw = bytes(damaged[:cut] if cut < len(RAW) else damaged)
    out = decode_or_dead_letter(MD_TRADES.codec, "fuzz", raw, ts=1)
    if isinstance(out, DeadLetter):
        assert out.raw == raw and out.reason
    else:
        assert isinstance(out, Trade)
