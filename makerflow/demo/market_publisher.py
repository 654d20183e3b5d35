"""The public market data of the services demo, published to Kafka: the exchange's streams
(ccxt pro) and the reference futures' recordings to ``md.book`` / ``md.trades``, and the
services' outputs followed back for the progress line."""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from confluent_kafka import OFFSET_BEGINNING

from makerflow.demo.progress import Progress
from makerflow.demo.reference_source import AlignedRecordedSource
from makerflow.demo.runner import ccxt_public_config
from makerflow.demo.venues import REFERENCE, ReferenceBookFactory, move_reference
from makerflow.flows.common import FlowSettings, TopicIO
from makerflow.schemas import topics as t
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.ccxt_public import CcxtPublicSource
from makerflow.sources.kafka import LagReportingKafkaSource, decode_events


def _follow(
    flow: Dataflow,
    brokers: tuple[str, ...],
    latch: RunLatch,
    topic: t.Topic[Any],
    on_event: Any,
) -> None:
    """Feed ``on_event`` with what the services publish on ``topic`` (until the run ends)."""
    source = LagReportingKafkaSource(
        list(brokers),
        [topic.name],
        tail=True,
        starting_offset=OFFSET_BEGINNING,
        raise_on_errors=False,
    )
    sid = f"follow_{topic.name.replace('.', '_')}"
    raw = op.input(sid, flow, bounded(source, latch, finite=False))
    events = decode_events(f"{sid}_decode", raw, topic.codec, step=sid)
    op.inspect(f"{sid}_progress", events.oks, lambda _s, e: on_event(e))


def market_flow(
    exchange_url: str,
    brokers: tuple[str, ...],
    latch: RunLatch,
    ref: Any,
    progress: Progress | None = None,
) -> Dataflow:
    """The public market data on Kafka: the exchange's streams (ccxt pro) and the reference
    futures' recordings to ``md.book`` and ``md.trades``; with ``progress``, it also follows
    the services' ticks, quotes, fills and risk states for the progress line."""
    flow = Dataflow("demo_market")
    io = TopicIO(flow, FlowSettings(brokers=brokers))
    md = op.input(
        "md", flow, bounded(CcxtPublicSource(ccxt_public_config(exchange_url)), latch, finite=False)
    )
    split = op.branch("book", md, lambda e: isinstance(e, BookSnapshot | BookDelta))
    trades = op.filter("trades", split.falses, lambda e: isinstance(e, Trade))
    recorded = op.input(
        "reference",
        flow,
        bounded(
            AlignedRecordedSource([str(p) for p in REFERENCE], ref.offset_ns), latch, finite=False
        ),
    )
    ok = op.filter("reference_ok", recorded, lambda e: not isinstance(e, DeadLetter))
    keyed = op.key_on("reference_key", ok, lambda e: e.key)
    factory = ReferenceBookFactory(ref.offset_ns, ref.crash, ref.start_ns)
    moved = op.key_rm(
        "reference_unkey",
        op.stateful_map("reference_now", keyed, lambda b, e: move_reference(b, e, factory=factory)),
    )
    ref_books = op.filter(
        "reference_books", moved, lambda e: isinstance(e, BookSnapshot | BookDelta)
    )
    io.write(op.merge("books", split.trues, ref_books), t.MD_BOOK)
    io.write(trades, t.MD_TRADES)
    if progress is not None:
        _follow(flow, brokers, latch, t.TICKS, progress.on_tick)
        _follow(flow, brokers, latch, t.QUOTES, progress.on_ladder)
        _follow(flow, brokers, latch, t.FILLS, progress.on_fill)
        _follow(flow, brokers, latch, t.RISK_STATE, progress.on_risk)
    return flow
