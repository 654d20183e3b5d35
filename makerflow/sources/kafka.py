"""Typed Kafka input: Bytewax's Kafka connector, then decode and validate into events.

Every message in becomes either an event on ``oks`` or a :class:`DeadLetter` on ``errs``
(consumer errors included), so ``in == out + dead letters`` holds for every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from confluent_kafka import OFFSET_BEGINNING

from makerflow import metrics
from makerflow.schemas.codec import EventCodec, EventDecodeError, dead_letter
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
    """Turns Kafka messages into events or dead letters, counting both.

    :meth:`decode_batch` is the step's hot path: counters rise once per batch (exact counts,
    one lock each instead of one per message).
    """

    def __init__(self, step: str, codec: EventCodec[E]) -> None:
        self.step = step
        self.codec = codec
        self._in = metrics.EVENTS_IN.labels(step=step)
        self._dead = metrics.DEAD_LETTERS.labels(step=step)

    def __call__(self, msg: RawMessage | KafkaError[bytes | None, bytes | None]) -> Any:
        """The event in one message, or its :class:`DeadLetter`."""
        out = self.decode_batch([msg])[0]
        return out.letter if type(out) is Rejected else out

    def decode_batch(
        self, msgs: list[RawMessage | KafkaError[bytes | None, bytes | None]]
    ) -> list[E | Rejected]:
        """One output per message, in order: the event, or its dead letter wrapped in
        :class:`Rejected`."""
        out: list[E | Rejected] = []
        append = out.append
        decode = self.codec.decode
        dead = 0
        for msg in msgs:
            if isinstance(msg, KafkaError):
                reason = f"kafka consumer error: {msg.err}"
                src = msg.msg
            else:
                try:
                    append(decode(msg.value))
                    continue
                except EventDecodeError as exc:
                    reason = str(exc)
                src = msg
            letter = dead_letter(
                self.step,
                reason,
                src.value,
                ts=_broker_ts_ns(src),
                key=src.key,
                topic=src.topic,
                partition=src.partition,
                offset=src.offset,
            )
            append(Rejected(letter))
            dead += 1
        self._in.inc(len(msgs))
        if dead:
            self._dead.inc(dead)
        return out


@dataclass(frozen=True, slots=True)
class Rejected:
    """A dead letter on its way out of :meth:`MessageDecoder.decode_batch`.

    Wrapped so that routing never mistakes a decoded ``DeadLetter`` *event* (a flow that reads
    the dead-letter topic) for a failure of this step.
    """

    letter: DeadLetter


def _is_event(x: object) -> bool:
    return type(x) is not Rejected


def _unwrap(x: Rejected) -> DeadLetter:
    return x.letter


@operator
def decode_events(
    step_id: str,
    up: Stream[RawMessage | KafkaError[bytes | None, bytes | None]],
    codec: EventCodec[E],
    step: str | None = None,
) -> EventStreams[E]:
    """Decode raw Kafka messages with ``codec`` into events and dead letters.

    ``step`` names the step in dead letters and metrics (default: ``step_id``).
    """
    decoder = MessageDecoder(step or step_id, codec)
    decoded = op.flat_map_batch("decode", up, decoder.decode_batch)
    split = op.branch("split", decoded, _is_event)
    errs = op.map("unwrap", split.falses, _unwrap)  # type: ignore[arg-type]
    return EventStreams(oks=split.trues, errs=errs)  # type: ignore[arg-type]


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
    # The connector's source directly, not ``kop.input``: that one splits consumer errors off
    # and this step would merge them straight back, two extra Python calls per message.
    source = KafkaSource(
        list(brokers),
        [topic.name],
        tail=tail,
        starting_offset=starting_offset,
        add_config=add_config,
        batch_size=batch_size,
        raise_on_errors=False,
    )
    raw = op.input("kafka", flow, source)
    return decode_events("decode", raw, topic.codec, step=step_id)
