"""The ticks service: ``md.book`` + ``md.trades`` in; ``ticks``, ``bars`` and ``md.quality``
out (dead letters to the dead-letter topic).

Run it with ``python -m bytewax.run makerflow.flows.ticks:flow`` (``-w N`` for N workers, one
per partition of the market topics). Settings come from the environment (see
:class:`~makerflow.flows.common.FlowSettings`); the ticks settings from the TOML file named
by ``MAKERFLOW_CONFIG`` (its ``[ticks]`` table, a
:class:`~makerflow.operators.ticks.TicksConfig`, every field optional), defaults when unset.

:func:`build_file_flow` is the same computation over a recorded file, writing JSONL files
(``makerflow ticks``).

Ordering: Kafka keeps each market's book updates in order, and its trades in order, but the
two topics are consumed at their own pace. Each market's updates and trades are merged in
event time (see :mod:`makerflow.operators.align`): tailing, with the ``[ticks] align_ms``
bound (default 200 ms), and a trade stops waiting for md.book once md.book's partition is
caught up (``[ticks] release_caught_up``); with ``MAKERFLOW_TAIL=0`` (a
replay) without any bound, so a replay gives the same ticks on every run and any number of
workers. ``align_ms = 0`` is the low-latency profile: nothing waits for the other topic
(arrival order), and a trade that arrives behind a later book update already applied is
reported on md.quality (``out_of_order``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from makerflow.flows.common import FlowSettings, TopicIO, lazy_flow
from makerflow.operators.ticks import TicksConfig, load_ticks_config, ticks_op
from makerflow.schemas import topics as t
from makerflow.schemas.topics import Topic
from makerflow.sinks.jsonl import jsonl_output
from makerflow.sources.recorded import recorded_input


@dataclass(frozen=True)
class TicksTopics:
    """The topics the ticks service reads and writes (the registry's unless renamed)."""

    book: Topic[Any] = t.MD_BOOK
    trades: Topic[Any] = t.MD_TRADES
    ticks: Topic[Any] = t.TICKS
    bars: Topic[Any] = t.BARS
    quality: Topic[Any] = t.MD_QUALITY


def build_flow(
    settings: FlowSettings,
    config: TicksConfig | None = None,
    topics: TicksTopics | None = None,
    flow_id: str = "ticks",
) -> Dataflow:
    """The ticks dataflow reading and writing Kafka."""
    tp = topics or TicksTopics()
    cfg = config or TicksConfig()
    flow = Dataflow(flow_id)
    io = TopicIO(flow, settings)
    # Live, held events stop waiting for a topic whose partition is caught up.
    live = settings.tail
    out = ticks_op(
        "ticks",
        io.read(tp.book, caught_up_markers=live and cfg.marks("book")),
        io.read(tp.trades, caught_up_markers=live and cfg.marks("trades")),
        cfg,
        bounded=not settings.tail,
        trades_topic=tp.trades.name,
    )
    io.write(out.ticks, tp.ticks)
    io.write(out.bars, tp.bars)
    io.write(out.quality, tp.quality)
    io.dead_letters([out.dead_letters])
    return flow


def build_file_flow(
    inputs: str | Path | Sequence[str | Path],
    ticks_path: str | Path,
    *,
    bars_path: str | Path | None = None,
    quality_path: str | Path | None = None,
    dead_letters_path: str | Path | None = None,
    config: TicksConfig | None = None,
    venue: str | None = None,
    symbol: str | None = None,
    speed: float | None = None,
    flow_id: str = "ticks_file",
) -> Dataflow:
    """Recorded files -> ticks (and optionally bars, findings, dead letters) as JSONL.

    Book updates and trades stay in one stream in recorded order, so the output is the same
    on any number of workers.
    """
    flow = Dataflow(flow_id)
    md = recorded_input("recorded", flow, inputs, venue=venue, symbol=symbol, speed=speed)
    out = ticks_op("ticks", md.oks, None, config or TicksConfig())
    jsonl_output("out_ticks", out.ticks, ticks_path)
    if bars_path is not None:
        jsonl_output("out_bars", out.bars, bars_path)
    if quality_path is not None:
        jsonl_output("out_quality", out.quality, quality_path)
    if dead_letters_path is not None:
        dead = op.merge("dead_letters", md.errs, out.dead_letters)
        jsonl_output("out_dead_letters", dead, dead_letters_path)
    return flow


def _flow_from_env() -> Dataflow:
    settings = FlowSettings.from_env()
    return build_flow(settings, load_ticks_config(settings.config_path))


# ``flow`` is built on first access (what ``bytewax.run`` does), which also serves /metrics.
__getattr__ = lazy_flow(_flow_from_env)
