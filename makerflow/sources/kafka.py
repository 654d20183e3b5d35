"""Typed Kafka input: Bytewax's Kafka connector, then decode and validate into events.

Every message in becomes either an event on ``oks`` or a :class:`DeadLetter` on ``errs``
(consumer errors included), so ``in == out + dead letters`` holds for every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream, operator
from confluent_kafka import OFFSET_BEGINNING

from makerflow import metrics
from makerflow.schemas.codec import EventCodec, dead_letter, decode_or_dead_letter
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.topics import Topic

E = TypeVar("E")

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]


@dataclass(frozen=True)
class EventStreams(Generic[E]):
    """The two outputs of a decoding step."""

    oks: Stream[E]
    """Valid events."""
    errs: Stream[DeadLetter]
    """Everything that could not become an event, with the reason."""


def _broker_ts_ns(msg: RawMessage) -> int:
    # The broker's timestamp of the message (ms); it is the best time a dead letter has.
    stamp: tuple[int, int] | None = msg.timestamp
    if not stamp:
        return 0
    return max(stamp[1], 0) * 1_000_000


class MessageDecoder(Generic[E]):
    """Turns one Kafka message into an event or a dead letter, counting both."""

    def __init__(self, step: str, codec: EventCodec[E]) -> None:
        self.step = step
        self.codec = codec
        self._in = metrics.EVENTS_IN.labels(step=step)
        self._dead = metrics.DEAD_LETTERS.labels(step=step)

    def __call__(self, msg: RawMessage | KafkaError[bytes | None, bytes | None]) -> Any:
        self._in.inc()
        if isinstance(msg, KafkaError):
            inner = msg.msg
            self._dead.inc()
            return dead_letter(
                self.step,
                f"kafka consumer error: {msg.err}",
                inner.value,
                ts=_broker_ts_ns(inner),
                key=inner.key,
                topic=inner.topic,
                partition=inner.partition,
                offset=inner.offset,
            )
        out = decode_or_dead_letter(
            self.codec,
            self.step,
            msg.value,
            ts=_broker_ts_ns(msg),
            key=msg.key,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
        )
        if isinstance(out, DeadLetter):
            self._dead.inc()
        return out


@operator
def decode_events(
    step_id: str,
    up: Stream[RawMessage | KafkaError[bytes | None, bytes | None]],
    codec: EventCodec[E],
) -> EventStreams[E]:
    """Decode raw Kafka messages with ``codec`` into events and dead letters."""
    decoded = op.map("decode", up, MessageDecoder(step_id, codec))
    split = op.branch("split", decoded, lambda x: not isinstance(x, DeadLetter))
    return EventStreams(oks=split.trues, errs=split.falses)


@operator
def kafka_input(
    step_id: str,
    flow: Dataflow,
    *,
    brokers: Sequence[str],
    topic: Topic[E],
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    add_config: dict[str, str] | None = None,
    batch_size: int = 1000,
) -> EventStreams[E]:
    """Read ``topic`` (one Bytewax partition per Kafka partition) as typed events.

    With ``tail=False`` the input ends at the end of every partition. On the tansu broker the
    reported end (high watermark) can fall short of the real one (see ``makerflow.broker``);
    the consumer still reads whole batches, so records past the reported end that arrived in
    the same batch are kept.
    """
    raw = kop.input(
        "kafka",
        flow,
        brokers=list(brokers),
        topics=[topic.name],
        tail=tail,
        starting_offset=starting_offset,
        add_config=add_config,
        batch_size=batch_size,
    )
    merged = op.merge("all", raw.oks, raw.errs)
    return decode_events("decode", merged, topic.codec)
