"""Ticks: the Bytewax operator around the per-market ticks logic.

:class:`~makerflow.operators.market_ticks.MarketTicks` is the pure per-market logic (top of
book and trade statistics, bars, data-quality findings, dead letters).

:func:`ticks_op` keys book updates and trades by ``venue:symbol``, keeps one
:class:`MarketTicks` per key in ``op.stateful`` and routes what it emits to four streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from makerflow import metrics
from makerflow.operators.align import TwoStreamMerger
from makerflow.operators.market_ticks import MarketTicks, Output

# Re-exported: makerflow.backtest and its tests take book_tick from here.
from makerflow.operators.market_ticks import book_tick as book_tick
from makerflow.schemas.config import Config, load_section
from makerflow.schemas.events import (
    Bar,
    BookDelta,
    BookSnapshot,
    DataQuality,
    DeadLetter,
    Tick,
    Trade,
)
from makerflow.schemas.markers import CaughtUp

_MS = 1_000_000


RELEASE_CAUGHT_UP = ("trades", "book", "both", "none")


class TicksConfig(Config, frozen=True, kw_only=True):
    """Settings of the ticks operator (all optional)."""

    depth: int = 5000
    """Levels kept per side (pruned back to it past 1.25x); deeper levels are dropped, and a
    book eaten through them reports a gap rather than show a wrong best price."""
    imbalance_levels: int = 5
    """N in the imbalance (bid depth - ask depth) / (bid depth + ask depth) over N levels."""
    vwap_window_ms: int = 60_000
    """Span of the rolling VWAP, in whole buckets of ``vwap_bucket_ms`` (event time)."""
    vwap_bucket_ms: int = 1_000
    bar_lengths_ms: tuple[int, ...] = (60_000,)
    """One bar stream per length; windows align to the Unix epoch."""
    bar_grace_ms: int = 2_000
    """How long after its end a bar waits for trades that arrive late."""
    reorder_window: int = 4
    """Deltas held while waiting for a missing one before a gap is declared."""
    resync_buffer: int = 2_000
    """Deltas kept while the book waits for a snapshot, replayed on it."""
    invalidate_on_cross: bool = True
    """A crossed book is reported; with this it also waits for a fresh snapshot."""
    silent_after_ms: int = 10_000
    """Event-time silence of a market longer than this is reported (0: never)."""
    dedup_trades: int = 256
    """Recent trade ids remembered per market to drop repeated trades."""
    align_ms: int = 200
    """With two input streams (the Kafka service), each market's book updates and trades
    are merged in event-time order (:mod:`makerflow.operators.align`). Live (tailing), an
    event waits for the other stream to show a later time, or at most until its own stream
    is this far past it (event time); an event of the other stream arriving behind that is
    applied and reported (``out_of_order``). A replay whose input ends
    (``MAKERFLOW_TAIL=0``) has no bound: it waits for the other stream or the end, so its
    ticks are the same on every run whatever the skew between the topics. 0 is the
    low-latency profile: nothing waits for the other topic (arrival order, in both modes; not
    reproducible), and an event older than one of the other stream already applied (a trade
    behind a later book update) is applied as it comes and reported (``out_of_order``), as
    with a bound. ``benchmarks/service_latency.py`` measures both profiles."""
    release_caught_up: str = "trades"
    """Live, which stream's held events also stop waiting once the *other* topic's Kafka
    partition has been caught up (read to the end the broker reported, nothing unread) for a
    whole fetch since they came: ``"trades"`` (when md.book is caught up; the default),
    ``"book"`` (when md.trades is), ``"both"`` or ``"none"``. Sound only for a stream the
    venue never sends behind the other. On the recorded Binance spot BTC/USDT day the book
    leads: of 3 450 book updates only the first snapshot arrives behind a later trade, while
    2 168 of 9 757 trades arrive behind a later book update (34 ms p50, 166 ms at most). So
    releasing held trades is safe (their wait: +39 -> +7 ms p50, +98 -> +12 ms p99, no more
    late events) and releasing book updates is not (1 851 late trades), in
    ``benchmarks/align_latency.py --arrival recv``."""

    def marks(self, stream: str) -> bool:
        """Whether ``stream``'s topic (``"book"`` or ``"trades"``) must send caught-up
        markers: it releases the other stream's held events."""
        other = "trades" if stream == "book" else "book"
        return self.align_ms > 0 and self.release_caught_up in (other, "both")

    def __post_init__(self) -> None:
        if self.depth < 1 or self.imbalance_levels < 1:
            raise ValueError("depth and imbalance_levels must be >= 1")
        if self.vwap_bucket_ms <= 0 or self.vwap_window_ms < self.vwap_bucket_ms:
            raise ValueError("vwap_bucket_ms must be > 0 and <= vwap_window_ms")
        if self.align_ms < 0:
            raise ValueError(f"align_ms must be >= 0, got {self.align_ms}")
        if self.release_caught_up not in RELEASE_CAUGHT_UP:
            raise ValueError(
                f"release_caught_up must be one of {', '.join(RELEASE_CAUGHT_UP)},"
                f" got {self.release_caught_up!r}"
            )
        if any(b <= 0 for b in self.bar_lengths_ms):
            raise ValueError(f"bar lengths must be > 0 ms, got {self.bar_lengths_ms}")


def load_ticks_config(path: str | Path | None) -> TicksConfig:
    """The ``[ticks]`` table of a TOML file (or, without one, the whole file); the defaults
    when ``path`` is None."""
    return load_section(path, "ticks", TicksConfig)


# --- the Bytewax operator ------------------------------------------------------------------

MarketState = tuple[str, str, tuple[object, ...], tuple[object, ...] | None]


class _TicksLogic(
    StatefulBatchLogic[BookSnapshot | BookDelta | Trade | CaughtUp, Output, MarketState]
):
    """Keeps one market's :class:`MarketTicks` (and, when two streams are aligned, its
    :class:`TwoStreamMerger`); counts findings and dead letters.

    A batch logic rather than a per-item one: the ticks step is the hot path of the service
    and one Python call per batch instead of per event is measurably cheaper."""

    def __init__(
        self,
        step_id: str,
        config: TicksConfig,
        align: bool,
        resume: MarketState | None,
        bounded: bool = False,
        trades_topic: str | None = None,
    ) -> None:
        self.step_id = step_id
        self.trades_topic = trades_topic
        self.bounded = bounded
        self.config = config
        self.market: MarketTicks | None = None
        # align_ms 0: arrival order in both modes, a late event still reported.
        lag = 0 if config.align_ms == 0 else None if bounded else config.align_ms * _MS
        self.merger = TwoStreamMerger(lag) if align else None
        if resume is not None:
            venue, symbol, state, merger = resume
            self.market = MarketTicks.from_state(venue, symbol, config, state)
            if self.merger is not None and merger is not None:
                self.merger.restore(merger)
        self._in = metrics.EVENTS_IN.labels(step=step_id)
        self._out = metrics.EVENTS_OUT.labels(step=step_id)
        self._dead = metrics.DEAD_LETTERS.labels(step=step_id)
        self._quality: dict[str, Any] = {}

    def on_batch(
        self, values: list[BookSnapshot | BookDelta | Trade | CaughtUp]
    ) -> tuple[list[Output], bool]:
        m = self.market
        if m is None:
            first = next((v for v in values if type(v) is not CaughtUp), None)
            if first is None:  # only markers: nothing is held yet
                return [], StatefulBatchLogic.RETAIN
            m = self.market = MarketTicks(first.venue, first.symbol, self.config)  # type: ignore[union-attr]
        feed = m.feed
        out: list[Output] = []
        markers = 0
        if self.merger is None:
            for v in values:
                if type(v) is CaughtUp:
                    markers += 1
                else:
                    feed(v, out)  # type: ignore[arg-type]
        else:
            merger = self.merger
            push = merger.push
            trades_topic = self.trades_topic
            for v in values:
                if type(v) is CaughtUp:
                    markers += 1
                    # A replay waits without any bound: markers change nothing there.
                    if not self.bounded:
                        for ev in merger.caught_up(v.topic == trades_topic):
                            feed(ev, out)
                    continue
                for ev in push(v):  # type: ignore[arg-type]
                    feed(ev, out)
            out.extend(merger.take_late())
        self._in.inc(len(values) - markers)
        if out:
            self._account(out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        if self.market is None:
            return [], StatefulBatchLogic.RETAIN
        out: list[Output] = []
        if self.merger is not None:
            for ev in self.merger.flush():
                self.market.feed(ev, out)
        out.extend(self.market.flush())
        self._account(out)
        return out, StatefulBatchLogic.RETAIN

    def _account(self, out: list[Output]) -> None:
        self._out.inc(len(out))
        for ev in out:
            if type(ev) is Tick:
                continue
            if isinstance(ev, DataQuality):
                counter = self._quality.get(ev.kind)
                if counter is None:
                    counter = metrics.DATA_QUALITY.labels(market=ev.key, kind=ev.kind)
                    self._quality[ev.kind] = counter
                counter.inc()
            elif isinstance(ev, DeadLetter):
                self._dead.inc()

    def snapshot(self) -> MarketState:
        assert self.market is not None
        merger = None if self.merger is None else self.merger.state()
        return (self.market.venue, self.market.symbol, self.market.state(), merger)


@dataclass(frozen=True)
class TicksOut:
    """The outputs of :func:`ticks_op`."""

    ticks: Stream[Tick]
    bars: Stream[Bar]
    quality: Stream[DataQuality]
    dead_letters: Stream[DeadLetter]


def _key(ev: BookSnapshot | BookDelta | Trade | CaughtUp) -> str:
    # A marker's key is its partition's message key, the topics' ``venue:symbol`` too.
    return ev.key


@operator
def ticks_op(
    step_id: str,
    book: Stream[BookSnapshot | BookDelta] | Stream[BookSnapshot | BookDelta | Trade],
    trades: Stream[Trade] | None = None,
    config: TicksConfig | None = None,
    *,
    bounded: bool = False,
    trades_topic: str | None = None,
) -> TicksOut:
    """Book updates and trades -> ticks, bars, data-quality findings and dead letters.

    Keyed by ``venue:symbol``. ``book`` may also carry the trades (one stream of a recorded
    file keeps book and trades in recorded order, which makes the output identical on any
    number of workers); pass ``trades=None`` then. Two streams (two Kafka topics) interleave
    in event-time order (``config.align_ms``, see
    :class:`~makerflow.operators.align.TwoStreamMerger`); ``bounded`` says the inputs end
    (a replay), so the merge waits without a time bound. The streams may carry
    :class:`~makerflow.schemas.markers.CaughtUp` markers of their Kafka partitions (see
    ``TicksConfig.release_caught_up``); ``trades_topic`` tells the trades' from the book's.
    """
    cfg = config or TicksConfig()
    up: Stream[BookSnapshot | BookDelta | Trade | CaughtUp] = (
        book if trades is None else op.merge("merge", book, trades)
    )
    keyed = op.key_on("key", up, _key)
    # Two streams always go through the merge: with align_ms 0 it holds nothing, but it
    # still reports the events that arrive behind what was already applied.
    align = trades is not None
    out = op.stateful_batch(
        "market",
        keyed,
        lambda resume: _TicksLogic(step_id, cfg, align, resume, bounded, trades_topic),
    )
    values = op.key_rm("unkey", out)
    is_tick = op.branch("ticks", values, lambda x: isinstance(x, Tick))
    is_bar = op.branch("bars", is_tick.falses, lambda x: isinstance(x, Bar))
    is_dq = op.branch("quality", is_bar.falses, lambda x: isinstance(x, DataQuality))
    return TicksOut(
        ticks=is_tick.trues,  # type: ignore[arg-type]
        bars=is_bar.trues,  # type: ignore[arg-type]
        quality=is_dq.trues,  # type: ignore[arg-type]
        dead_letters=is_dq.falses,  # type: ignore[arg-type]
    )
