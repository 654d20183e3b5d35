"""Latencies recorded on a live run, for the simulated venue to draw from.

A live run's ``intents.jsonl`` (what the quoter sent, stamped when it decided) and
``order_events.jsonl`` (the venue's answers, stamped with the venue's time) give, per order,
the entry latency (place -> ack) and the cancel latency (cancel -> canceled): what
``venue.entry_latency_samples_ms`` and ``venue.cancel_latency_samples_ms`` take.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.jsonl import read_jsonl

NS_PER_MS = 1_000_000


def measured_latencies(
    intents: Iterable[OrderIntent], events: Iterable[OrderEvent]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(entry, cancel) latencies in ms, one per answered order, in the order answered."""
    placed: dict[str, int] = {}
    cancels: dict[str, int] = {}
    for i in intents:
        if i.client_order_id is None:
            continue
        if i.action == "place":
            placed.setdefault(i.client_order_id, i.ts)
        elif i.action == "cancel":
            cancels.setdefault(i.client_order_id, i.ts)
    entry: list[float] = []
    cancel: list[float] = []
    for e in events:
        cid = e.client_order_id
        if e.status == "ack" and cid in placed:
            entry.append(max(e.ts - placed.pop(cid), 0) / NS_PER_MS)
        elif e.status == "canceled" and cid in cancels:
            cancel.append(max(e.ts - cancels.pop(cid), 0) / NS_PER_MS)
    return tuple(entry), tuple(cancel)


def latencies_of_run(run_dir: str | Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`measured_latencies` of a run directory (the demo's, a live deployment's)."""
    d = Path(run_dir)
    intents: list[OrderIntent] = read_jsonl(d / "intents.jsonl", OrderIntent)
    events: list[OrderEvent] = read_jsonl(d / "order_events.jsonl", OrderEvent)
    return measured_latencies(intents, events)
