"""Typed Kafka output: encode events as JSON, keyed by the topic's key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Stream, operator

from makerflow import metrics
from makerflow.schemas.codec import encode
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.topics import DEAD_LETTERS, Topic


class MessageEncoder:
    """Event -> Kafka message with the topic's key (``venue:symbol``, ``account:asset``)."""

    def __init__(self, step: str, topic: Topic[Any]) -> None:
        self.topic = topic
        self._out = metrics.EVENTS_OUT.labels(step=step)

    def __call__(self, event: Any) -> KafkaSinkMessage[bytes | None, bytes]:
        self._out.inc()
        key = self.topic.key_of(event)
        return KafkaSinkMessage(key=key.encode() if key else None, value=encode(event))


@operator
def kafka_output(
    step_id: str,
    up: Stream[Any],
    *,
    brokers: Sequence[str],
    topic: Topic[Any],
    add_config: dict[str, str] | None = None,
) -> None:
    """Write events to ``topic``; Kafka's partitioner keeps one key on one partition."""
    msgs = op.map("encode", up, MessageEncoder(step_id, topic))
    kop.output("kafka", msgs, brokers=list(brokers), topic=topic.name, add_config=add_config)


@operator
def dead_letter_output(
    step_id: str,
    up: Stream[DeadLetter],
    *,
    brokers: Sequence[str],
    add_config: dict[str, str] | None = None,
) -> None:
    """Write dead letters to the dead-letter topic."""
    kafka_output("out", up, brokers=brokers, topic=DEAD_LETTERS, add_config=add_config)
