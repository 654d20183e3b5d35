"""Running a backtest: inputs, the quoted markets, the dataflow, the files, the figures.

:func:`run_backtest` is what ``makerflow backtest``, the sweeps and the benchmark call. The
progress bar (tqdm, on stderr) counts events replayed of the total, events/s and simulated
time; it lives here at the edge, fed by the sources after every batch.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from bytewax.testing import cluster_main, run_main

from makerflow.backtest.flow import assemble, build_backtest_flow
from makerflow.backtest.inputs import (
    KafkaReplaySource,
    PartitionPlan,
    TaggedSource,
    count_lines,
    plan_kafka,
    recorded_source,
)
from makerflow.backtest.settings import BacktestConfig
from makerflow.backtest.summary import headline
from makerflow.operators.quoting_config import MarketConfig
from makerflow.schemas import topics as t
from makerflow.schemas.events import BookSnapshot
from makerflow.sources.recorded import RecordedMarket, discover, open_lines

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileInput:
    """Recorded files (every format ``makerflow ticks`` reads)."""

    paths: tuple[str, ...]
    venue: str | None = None
    symbol: str | None = None
    control: tuple[str, ...] = ()
    """Files of control commands (JSON lines) replayed in event time with the data."""


@dataclass(frozen=True)
class KafkaInput:
    """Recorded topics on a broker, from the beginning, from offsets or from a time."""

    brokers: tuple[str, ...]
    topics: tuple[str | t.Topic[Any], ...] = (t.MD_BOOK.name, t.MD_TRADES.name)
    """Registered topic names, or :class:`~makerflow.schemas.topics.Topic` s (renamed ones)."""
    from_time_ms: int | None = None
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class BacktestResult:
    out_dir: Path
    counts: dict[str, int]
    figures: dict[str, float | int]
    events: int
    seconds: float
    sim_start_ns: int = 0
    sim_end_ns: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# --- quoted markets ---------------------------------------------------------------------------


def _decimals(x: float) -> int:
    exp = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def infer_market(market: RecordedMarket, first: BookSnapshot | None) -> MarketConfig:
    """A market's trading rules guessed from its first book snapshot: the tick is the
    finest price step between levels, the lot the finest quantity decimal. For recordings
    without a quoting configuration; a ``[[quoting.markets]]`` table is exact."""
    tick, lot = 0.01, 0.001
    if first is not None:
        prices = sorted({p for p, _ in (*first.bids, *first.asks)})
        steps = [round(b - a, 10) for a, b in itertools.pairwise(prices) if b > a]
        if steps:
            d = max(_decimals(p) for p in prices)
            tick = round(min(steps), d) or 10.0**-d
        qd = max((_decimals(q) for _, q in (*first.bids, *first.asks)), default=3)
        lot = 10.0**-qd
    logger.warning(
        "%s has no [[quoting.markets]] table: tick %g and lot %g guessed from its first"
        " book snapshot",
        market.name,
        tick,
        lot,
    )
    return MarketConfig(
        venue=market.venue, symbol=market.symbol, tick_size=tick, lot_size=lot, min_qty=lot
    )


def _first_snapshot(market: RecordedMarket, max_lines: int = 50_000) -> BookSnapshot | None:
    """The market's first book snapshot, parsing line by line only as far as it."""
    parser = market.parser()
    n = 0
    for path in market.paths:
        with open_lines(path) as f:
            for line in f:
                for ev in parser.feed(line):
                    if isinstance(ev, BookSnapshot):
                        return ev
                n += 1
                if n > max_lines:
                    return None
    return None


def with_input_markets(config: BacktestConfig, inp: FileInput) -> BacktestConfig:
    """``config``, quoting the recording's markets when none of them is configured."""
    markets = discover(list(inp.paths), venue=inp.venue, symbol=inp.symbol)
    configured = {m.key for m in config.quoting.markets}
    if any(m.name in configured for m in markets):
        return config
    quoted = tuple(infer_market(m, _first_snapshot(m)) for m in markets if m.symbol)
    quoting = msgspec.structs.replace(config.quoting, markets=quoted)
    return msgspec.structs.replace(config, quoting=quoting)


# --- progress ------------------------------------------------------------------------------------


class _Progress:
    """The bar counts input lines (recordings) or messages (Kafka) of the total."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.lock = threading.Lock()
        self.file_lines: dict[str, list[int]] = {}
        self.kafka_start: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.events = 0
        self.first: int | None = None
        self.last = 0
        self.bar: Any = None
        self._shown = 0.0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="line", unit_scale=True, desc="backtest")

    def _position(self, stream: str, pos: Any) -> int:
        if stream in self.file_lines:
            file_idx, line_no = int(pos[0]), int(pos[1])
            return sum(self.file_lines[stream][:file_idx]) + line_no
        return int(pos) - self.kafka_start.get(stream, 0)

    def hook(self, stream: str, n: int, mts: int, pos: Any) -> None:
        with self.lock:
            self.events += n
            if self.first is None or mts < self.first:
                self.first = mts
            self.last = max(self.last, mts)
            if self.bar is not None:
                done = self._position(stream, pos)
                self.bar.update(done - self.done.get(stream, 0))
                self.done[stream] = done
                now = time.monotonic()
                if now - self._shown > 0.5:
                    self._shown = now
                    sim = datetime.fromtimestamp(self.last / 1e9, tz=UTC)
                    self.bar.set_postfix_str(
                        f"{self.events} events, sim {sim:%Y-%m-%d %H:%M:%S}", refresh=False
                    )

    def close(self) -> None:
        if self.bar is not None:
            sim = datetime.fromtimestamp(self.last / 1e9, tz=UTC)
            self.bar.set_postfix_str(f"{self.events} events, sim {sim:%Y-%m-%d %H:%M:%S}")
            self.bar.close()


# --- running ---------------------------------------------------------------------------------


def _source(
    inp: FileInput | KafkaInput, progress: _Progress
) -> tuple[TaggedSource, list[PartitionPlan]]:
    if isinstance(inp, FileInput):
        return recorded_source(
            list(inp.paths),
            venue=inp.venue,
            symbol=inp.symbol,
            control=inp.control,
            hook=progress.hook,
        ), []
    topics: dict[str, t.Topic[Any]] = {}
    for topic in inp.topics:
        if isinstance(topic, str):
            if topic not in t.TOPICS:
                raise ValueError(f"unknown topic {topic!r}; registered: {sorted(t.TOPICS)}")
            topics[topic] = t.TOPICS[topic]
        else:
            topics[topic.name] = topic
    plans = plan_kafka(
        inp.brokers, list(topics), from_time_ms=inp.from_time_ms, offsets=inp.offsets or None
    )
    return TaggedSource(KafkaReplaySource(inp.brokers, topics, plans), progress.hook), plans


def _count_files(inp: FileInput, bar: _Progress) -> int:
    total = 0
    for m in discover(list(inp.paths), venue=inp.venue, symbol=inp.symbol):
        counts = [count_lines([p]) for p in m.paths]
        bar.file_lines[m.name] = counts
        total += sum(counts)
    return total


def run_backtest(
    inp: FileInput | KafkaInput,
    config: BacktestConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = False,
) -> BacktestResult:
    """Run one backtest and write every stream to ``<out_dir>/<name>.jsonl``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(inp, FileInput):
        config = with_input_markets(config, inp)
    bar = _Progress(None, progress)
    if progress and isinstance(inp, FileInput) and bar.bar is not None:
        bar.bar.total = _count_files(inp, bar)
    source, plans = _source(inp, bar)
    if plans:
        bar.kafka_start = {p.name: p.start for p in plans}
        if bar.bar is not None:
            bar.bar.total = sum(max(p.end - p.start, 0) for p in plans)
    parts = out / ".parts"
    if parts.exists():
        import shutil

        shutil.rmtree(parts)
    flow = build_backtest_flow(source, config, parts)
    started = time.perf_counter()
    try:
        if workers > 1:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        else:
            run_main(flow)
    finally:
        bar.close()
    counts = assemble(parts, out, len(config.quoting.markets))
    seconds = time.perf_counter() - started
    return BacktestResult(
        out_dir=out,
        counts=counts,
        figures=headline(out),
        events=bar.events,
        seconds=seconds,
        sim_start_ns=bar.first or 0,
        sim_end_ns=bar.last,
    )


def fmt(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}"


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A fixed-width table: one row per run, one column per figure."""
    if not rows:
        return ""
    cols = list(rows[0][1])
    head = ["run", *cols]
    body = [[name, *(fmt(r[c]) for c in cols)] for name, r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=False))
        )
    ]
    for row in body:
        lines.append(
            "  ".join(
                x.rjust(w) if i else x.ljust(w)
                for i, (x, w) in enumerate(zip(row, widths, strict=False))
            )
        )
    return "\n".join(lines)
