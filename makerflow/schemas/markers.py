"""Markers that travel with a flow's events but are not events: never encoded, never
written to a topic, never counted as events in or as dead letters."""

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
