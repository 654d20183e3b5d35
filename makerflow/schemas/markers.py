"""Markers a source puts between the events of a stream: not data, never encoded, never
written to a topic, never counted as events in or as dead letters.

:class:`InputEnded` says a bounded replay's partition has ended (the replay merges use it to
stop waiting for an input that has nothing more). :class:`CaughtUp` says a Kafka partition
has handed over everything the broker said it held: the event-time merges of a live service
(``operators/align.py``) use it to stop waiting for a stream that has nothing pending instead
of waiting for its next event or their bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputEnded:
    """Partition ``partition`` of ``topic`` reached the end offset a bounded replay
    (``MAKERFLOW_TAIL=0``) stops at: nothing more comes from it in this run.

    The bounded Kafka source sends one after the partition's last message, on the same path
    as its messages, so every step downstream sees it after them. ``partitions`` is the
    topic's partition count: a merger knows the whole topic has ended once it holds that
    many distinct partitions' markers. Operators that do not merge inputs never see one
    (the markers are opt-in per read, ``kafka_input(..., end_markers=True)``).
    """

    topic: str
    partition: int
    partitions: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Partition ``partition`` of ``topic`` was caught up (its consumer had read up to the
    end the broker last reported, and held nothing unread) for the stream of ``key``, one of
    the message keys seen on it (``venue:symbol``).

    Sent again every ``fetch.wait.max.ms`` + 1 ms while the partition stays caught up, so a
    consumer of the marker can ask for one that came a whole fetch after an event (see
    :meth:`~makerflow.operators.align.TwoStreamMerger.caught_up`), or once per run (the
    execution start: the intents from before the run have all been read once every
    partition of their topic has been caught up)."""

    key: str
    topic: str
    partition: int
    partitions: int = 0
    """The topic's partition count (0: not known)."""
