"""Bad input through a real flow on the real broker: every bad message becomes a dead letter
with its raw bytes, origin and a reason that names the problem; good messages around it still
come out; nothing is lost (in = out + dead letters) and the counter agrees."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from bytewax.dataflow import Dataflow
from prometheus_client import REGISTRY

from makerflow.broker import Broker
from makerflow.kafka_admin import ensure_topics, produce_raw, read_topic
from makerflow.schemas.codec import encode
from makerflow.schemas.events import DeadLetter, Trade
from makerflow.schemas.topics import Topic
from makerflow.sinks.kafka import dead_letter_output, kafka_output
from makerflow.sources.kafka import kafka_input

pytestmark = pytest.mark.slow

_steps = itertools.count()


def trade(i: int) -> Trade:
    return Trade(
        ts=1_723_161_253_000_000_000 + i * 1_000_000,
        venue="binance",
        symbol="BTC/USDT",
        trade_id=str(1000 + i),
        price=61_000.0 + i / 100,
        qty=0.001 * (i + 1),
        side="buy" if i % 2 else "sell",
    )


GOOD = encode(trade(0))
MB = 1024 * 1024


@dataclass(frozen=True)
class Bad:
    name: str
    value: bytes | None
    reason: str
    """A phrase the dead letter's reason must contain."""


BAD_INPUTS = [
    Bad("truncated JSON", GOOD[: len(GOOD) // 2], "malformed JSON"),
    Bad("truncated by one byte", GOOD[:-1], "malformed JSON"),
    Bad("wrong type", GOOD.replace(b'"price":61000.0', b'"price":"61000"'), "`$.price`"),
    Bad("wrong enum", GOOD.replace(b'"side":"sell"', b'"side":"hold"'), "`$.side`"),
    Bad("null field", GOOD.replace(b'"qty":0.001', b'"qty":null'), "`$.qty`"),
    Bad("unknown field", GOOD.replace(b'"side"', b'"maker":true,"side"'), "unknown field `maker`"),
    Bad("missing field", GOOD.replace(b',"trade_id":"1000"', b""), "missing required field"),
    Bad("wrong schema version", GOOD.replace(b'"v":1', b'"v":2'), "schema version 2"),
    Bad(
        "future version, new shape",
        GOOD.replace(b'"v":1', b'"v":3').replace(b'"qty"', b'"size"'),
        "schema version 3",
    ),
    Bad("wrong tag", GOOD.replace(b'"type":"trade"', b'"type":"tick"'), "`$.type`"),
    Bad("missing tag", GOOD.replace(b'"type":"trade",', b""), "field `type`"),
    Bad("not UTF-8", b"\xff\xfe\x00{", "not UTF-8"),
    Bad("not UTF-8 inside a string", GOOD.replace(b'"1000"', b'"10\xc3\x28"'), "not UTF-8"),
    Bad("empty value", b"", "empty value"),
    Bad("null value", None, "null value"),
    Bad("a JSON array", b"[1,2,3]", "Expected `object`"),
    Bad("deep nesting", b"[" * 100_000, "malformed JSON"),
    Bad("1 MB of junk", b"x" * MB, "malformed JSON"),
    Bad(
        "1 MB JSON value",
        GOOD.replace(b'"price":61000.0', b'"price":[' + b"0," * (MB // 2) + b"0]"),
        "`$.price`",
    ),
]


def test_every_bad_input_is_a_dead_letter_and_counts_balance(
    broker: Broker, unique: Callable[[str], str], run_flow: Callable[[Dataflow], None]
) -> None:
    brokers = [broker.bootstrap]
    src = Topic(unique("md.trades"), "market", Trade)
    out = Topic(unique("out.trades"), "market", Trade)
    dlq = Topic(unique("deadletter"), "none", DeadLetter)
    ensure_topics(brokers, [src.name, out.name, dlq.name])

    # Good and bad interleaved, each bad one between two good ones.
    values: list[tuple[bytes | None, bytes | None]] = []
    bad_at: dict[int, Bad] = {}
    good: list[Trade] = []
    for i, bad in enumerate(BAD_INPUTS):
        good.append(trade(len(good)))
        values.append((b"binance:BTC/USDT", encode(good[-1])))
        bad_at[len(values)] = bad
        values.append((f"bad-{i}".encode(), bad.value))
    good.append(trade(len(good)))
    values.append((b"binance:BTC/USDT", encode(good[-1])))
    produce_raw(brokers, src.name, values)

    n = next(_steps)
    flow = Dataflow(f"dead_letters_{n}")
    # Dead letters and metrics name the input step by its full Bytewax step id.
    step = f"dead_letters_{n}.in_trades"
    before = REGISTRY.get_sample_value("makerflow_dead_letters_total", {"step": step}) or 0.0
    streams = kafka_input("in_trades", flow, brokers=brokers, topic=src, tail=False)
    kafka_output("out", streams.oks, brokers=brokers, topic=out)
    dead_letter_output("dlq", streams.errs, brokers=brokers, topic=dlq)
    run_flow(flow)

    outs = [out.codec.decode(m.value()) for m in read_topic(brokers, out.name, expected=len(good))]
    letters = [
        dlq.codec.decode(m.value()) for m in read_topic(brokers, dlq.name, expected=len(BAD_INPUTS))
    ]

    assert outs == good, "valid messages between bad ones must all come out, in order"
    assert len(values) == len(outs) + len(letters)
    by_offset = {dl.offset: dl for dl in letters}
    assert sorted(by_offset) == sorted(bad_at), "one dead letter per bad message"
    for offset, bad in bad_at.items():
        dl = by_offset[offset]
        assert dl.raw == (bad.value or b""), bad.name
        assert dl.topic == src.name, bad.name
        assert dl.partition == 0, bad.name
        assert dl.step == step, bad.name
        assert dl.key == values[offset][0], bad.name
        assert bad.reason in dl.reason, f"{bad.name}: {dl.reason!r}"
        assert dl.ts > 0, f"{bad.name}: a dead letter carries the broker's timestamp"
    after = REGISTRY.get_sample_value("makerflow_dead_letters_total", {"step": step})
    assert after is not None
    assert after - before == len(BAD_INPUTS)
    seen = REGISTRY.get_sample_value("makerflow_events_in_total", {"step": step})
    assert seen == len(values)
