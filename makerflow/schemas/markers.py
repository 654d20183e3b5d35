"""Markers a source puts between the events of a stream: not data, never written to a topic.

:class:`CaughtUp` says a Kafka partition has handed over everything the broker said it
held: the event-time merges of a live service (``operators/align.py``) use it to stop waiting
for a stream that has nothing pending instead of waiting for its next event or their bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Partition ``partition`` of ``topic`` was caught up (its consumer had read up to the
    end the broker last reported, and held nothing unread) for the stream of ``key``, one of
    the message keys seen on it (``venue:symbol``).

    Sent again every ``fetch.wait.max.ms`` + 1 ms while the partition stays caught up, so a
    consumer of the marker can ask for one that came a whole fetch after an event (see
    :meth:`~makerflow.operators.align.TwoStreamMerger.caught_up`)."""

    key: str
    topic: str
    partition: int
