"""Ticks: top of book and trade statistics per market, and the Bytewax operator around them.

:class:`MarketTicks` is the pure per-market logic: an :class:`OrderBook`, a rolling VWAP, the
last trade, bars and the feed's health. It emits a :class:`Tick` whenever the top of book
(best prices or their sizes) changes and on every trade, :class:`Bar` s as windows close,
:class:`DataQuality` findings, and a :class:`DeadLetter` for an event whose values cannot be
right (a NaN price, a negative size, an update range that runs backwards).

:func:`ticks_op` keys book updates and trades by ``venue:symbol``, keeps one
:class:`MarketTicks` per key in ``op.stateful`` and routes what it emits to four streams.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic
from msgspec.structs import replace

from makerflow import metrics
from makerflow.operators.align import TwoStreamMerger
from makerflow.operators.bars import BarBuilder
from makerflow.operators.book import OrderBook
from makerflow.schemas.codec import dead_letter, encode
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

_MS = 1_000_000
STEP = "ticks"


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
    ticks are the same on every run whatever the skew between the topics. 0 turns the merge
    off: arrival order, in both modes (lowest latency, not reproducible)."""

    def __post_init__(self) -> None:
        if self.depth < 1 or self.imbalance_levels < 1:
            raise ValueError("depth and imbalance_levels must be >= 1")
        if self.vwap_bucket_ms <= 0 or self.vwap_window_ms < self.vwap_bucket_ms:
            raise ValueError("vwap_bucket_ms must be > 0 and <= vwap_window_ms")
        if self.align_ms < 0:
            raise ValueError(f"align_ms must be >= 0, got {self.align_ms}")
        if any(b <= 0 for b in self.bar_lengths_ms):
            raise ValueError(f"bar lengths must be > 0 ms, got {self.bar_lengths_ms}")


def load_ticks_config(path: str | Path | None) -> TicksConfig:
    """The ``[ticks]`` table of a TOML file (or, without one, the whole file); the defaults
    when ``path`` is None."""
    return load_section(path, "ticks", TicksConfig)


class RollingVwap:
    """Volume-weighted average price over the last ``n`` event-time buckets (pure).

    Running sums make ``value()`` O(1); they are recomputed from the buckets whenever a bucket
    is evicted, so float error never accumulates beyond one window.
    """

    def __init__(self, window_ns: int, bucket_ns: int) -> None:
        self.bucket = bucket_ns
        self.n = max(1, window_ns // bucket_ns)
        self.buckets: deque[list[float]] = deque()
        """[bucket start, notional, volume], oldest first."""
        self.notional = 0.0
        self.volume = 0.0

    def add(self, ts: int, price: float, qty: float) -> None:
        start = ts - ts % self.bucket
        b = self.buckets
        notional = price * qty
        self.notional += notional
        self.volume += qty
        if b:
            last = b[-1]
            if last[0] == start:
                # The common case (another trade in the newest bucket), looked up once.
                last[1] += notional
                last[2] += qty
                return
        if not b or start > b[-1][0]:
            b.append([start, notional, qty])
            self._evict(start)
            return
        for item in b:
            if item[0] == start:
                item[1] += notional
                item[2] += qty
                return
        # Older than every bucket kept (or in a hole): outside the window, or a new bucket.
        if start >= b[-1][0] - (self.n - 1) * self.bucket:
            b.append([start, notional, qty])
            self.buckets = deque(sorted(b))
        else:
            self.notional -= notional
            self.volume -= qty

    def _evict(self, newest: float) -> None:
        horizon = newest - (self.n - 1) * self.bucket
        b = self.buckets
        if b[0][0] >= horizon:
            return
        while b and b[0][0] < horizon:
            b.popleft()
        self.notional = sum(x[1] for x in b)
        self.volume = sum(x[2] for x in b)

    def value(self) -> float | None:
        return self.notional / self.volume if self.volume > 0 else None

    def state(self) -> tuple[float, float, tuple[tuple[float, float, float], ...]]:
        # The running sums are state too: recomputing them on restore would round
        # differently and a resumed run would not give byte-identical ticks.
        return (self.notional, self.volume, tuple((x[0], x[1], x[2]) for x in self.buckets))

    def restore(self, state: Any) -> None:
        self.notional, self.volume, buckets = state
        self.buckets = deque([list(x) for x in buckets])


Output = Tick | Bar | DataQuality | DeadLetter


def top_stats(
    bid: float, bid_qty: float, ask: float, ask_qty: float, bid_depth: float, ask_depth: float
) -> tuple[float, float, float, float]:
    """``(mid, microprice, spread_bps, imbalance)`` of a top of book (pure)."""
    mid = (bid + ask) * 0.5
    size = bid_qty + ask_qty
    micro = (bid * ask_qty + ask * bid_qty) / size if size > 0 else mid
    spread_bps = (ask - bid) / mid * 10_000.0
    depth = bid_depth + ask_depth
    imbalance = (bid_depth - ask_depth) / depth if depth > 0 else 0.0
    return mid, micro, spread_bps, imbalance


def book_tick(
    venue: str, symbol: str, ts: int, bid: float, bid_qty: float, ask: float, ask_qty: float
) -> Tick:
    """A book Tick from a top of book alone (a bookTicker feed, a venue's best bid/offer):
    imbalance over the one level there is."""
    mid, micro, spread_bps, imbalance = top_stats(bid, bid_qty, ask, ask_qty, bid_qty, ask_qty)
    return Tick(
        ts=ts,
        venue=venue,
        symbol=symbol,
        reason="book",
        bid=bid,
        bid_qty=bid_qty,
        ask=ask,
        ask_qty=ask_qty,
        mid=mid,
        microprice=micro,
        spread_bps=spread_bps,
        imbalance=imbalance,
    )


def levels_ok(levels: tuple[tuple[float, float], ...]) -> bool:
    """Every price finite and > 0, every size finite and >= 0 (this runs on every book update).

    A plain loop of chained comparisons (False for NaN, so NaN is refused too): on Python
    3.11 the specialised float compares make it about 4x faster on a 36-level update than
    C passes like ``min(map(itemgetter(0), ...))`` and ``sum(chain(...))``, which go through
    generic object calls for every value, and it stops at the first bad level."""
    inf = _INF  # a local read is cheaper than a global one, twice per level
    # Not all(<generator>) as ruff suggests: resuming a generator per level costs 2.5x more.
    for p, q in levels:  # noqa: SIM110
        if not (0.0 < p < inf and 0.0 <= q < inf):
            return False
    return True


_INF = math.inf
_NEVER = 2**63


class MarketTicks:
    """Everything the ticks service knows about one market (pure: no I/O, no clock)."""

    def __init__(self, venue: str, symbol: str, config: TicksConfig) -> None:
        self.venue = venue
        self.symbol = symbol
        self.config = config
        self.book = OrderBook(
            venue,
            symbol,
            max_depth=config.depth,
            reorder_window=config.reorder_window,
            resync_buffer=config.resync_buffer,
            invalidate_on_cross=config.invalidate_on_cross,
        )
        self.vwap = RollingVwap(config.vwap_window_ms * _MS, config.vwap_bucket_ms * _MS)
        self.bars = [
            BarBuilder(venue, symbol, length * _MS, config.bar_grace_ms * _MS)
            for length in config.bar_lengths_ms
        ]
        self.last_top: tuple[float, float, float, float] | None = None
        self.last_price: float | None = None
        self.last_qty: float | None = None
        self.last_ts = 0
        self.recent_trades: deque[str] = deque(maxlen=config.dedup_trades)
        self._recent_set: set[str] = set()
        self.counts: dict[str, int] = {}
        self._silent_ns = config.silent_after_ms * _MS
        self._levels = config.imbalance_levels
        self._stats: tuple[float, float, float, float] | None = None
        """(mid, microprice, spread_bps, imbalance) of the current book, computed lazily."""
        self._base: Tick | None = None
        """The last tick built since the book last changed: later ticks copy its book fields
        (msgspec's ``replace`` of five fields costs about 2/3 of building all fifteen)."""
        self._bars_due = _NEVER
        """Earliest event time at which some open bar can close."""

    # --- dispatch ----------------------------------------------------------------------

    def on_event(self, ev: BookSnapshot | BookDelta | Trade) -> list[Output]:
        """Everything one book update or trade causes, in order."""
        out: list[Output] = []
        self.feed(ev, out)
        return out

    def feed(self, ev: BookSnapshot | BookDelta | Trade, out: list[Output]) -> None:
        """:meth:`on_event` appending to ``out``: a batch of events fills one list instead
        of a list per event."""
        if isinstance(ev, Trade) and 0.0 < ev.price < _INF and 0.0 < ev.qty < _INF:
            reason = None  # a good trade (most events): two chained compares, no call
        else:
            reason = self._invalid(ev)
        if reason is not None:
            self._count("dead_letter")
            out.append(dead_letter(STEP, reason, encode(ev), ts=ev.ts, key=ev.key.encode()))
            return
        ts = ev.ts
        last = self.last_ts
        if ts > last:
            if last and self._silent_ns and ts - last > self._silent_ns:
                detail = f"no data for {(ts - last) / 1e9:.3f} s"
                out.append(self._finding("silent", ts, detail))
            self.last_ts = ts
        if isinstance(ev, Trade):
            self.on_trade(ev, out)
        else:
            self.on_book(ev, out)
        if self.last_ts >= self._bars_due:
            self._close_bars(out)

    def flush(self) -> list[Output]:
        """Close every open bar (end of input)."""
        out: list[Output] = []
        for b in self.bars:
            out.extend(b.flush())
        self._bars_due = _NEVER
        return out

    def _close_bars(self, out: list[Output]) -> None:
        due = _NEVER
        for b in self.bars:
            out.extend(b.advance(self.last_ts))
            nxt = b.next_due()
            if nxt is not None and nxt < due:
                due = nxt
        self._bars_due = due

    # --- book --------------------------------------------------------------------------

    def on_book(self, ev: BookSnapshot | BookDelta, out: list[Output]) -> None:
        findings = self.book.apply(ev)
        if findings:
            out.extend(findings)
        self._stats = None
        self._base = None
        top = self.book.top()
        if top != self.last_top:
            self.last_top = top
            if top is not None:
                out.append(self._tick("book", self.book.ts, top))

    # --- trades ------------------------------------------------------------------------

    def on_trade(self, tr: Trade, out: list[Output]) -> None:
        tid = tr.trade_id
        recent = self._recent_set
        if tid in recent:
            out.append(self._finding("duplicate", tr.ts, f"trade {tid} seen"))
            return
        ids = self.recent_trades
        if len(ids) == ids.maxlen:
            recent.discard(ids[0])
        ids.append(tid)
        recent.add(tid)
        due = self._bars_due
        for b in self.bars:
            bars, accepted = b.add(tr)
            if bars:
                out.extend(bars)
            if accepted:
                if b.due < due:
                    due = b.due
            else:
                length_s = b.length / 1e9
                detail = f"trade {tid} late for its {length_s:g}s bar"
                out.append(self._finding("stale", tr.ts, detail))
        self._bars_due = due
        self.vwap.add(tr.ts, tr.price, tr.qty)
        self.last_price = tr.price
        self.last_qty = tr.qty
        top = self.last_top
        if top is not None:
            out.append(self._tick("trade", tr.ts, top))

    # --- helpers -----------------------------------------------------------------------

    def _tick(self, reason: str, ts: int, top: tuple[float, float, float, float]) -> Tick:
        vwap = self.vwap  # RollingVwap.value() inlined: one call less per tick
        base = self._base
        if base is not None:
            # The top of book (passed as ``top``) and its stats are the base's: only the
            # book resets them, and it resets the base too.
            return replace(
                base,
                ts=ts,
                reason=reason,
                last_price=self.last_price,
                last_qty=self.last_qty,
                vwap=vwap.notional / vwap.volume if vwap.volume > 0 else None,
            )
        bid, bid_qty, ask, ask_qty = top
        stats = self._stats
        if stats is None:
            n = self._levels
            stats = self._stats = top_stats(
                bid, bid_qty, ask, ask_qty, self.book.bids.depth(n), self.book.asks.depth(n)
            )
        mid, micro, spread, imb = stats
        base = self._base = Tick(
            ts=ts,
            venue=self.venue,
            symbol=self.symbol,
            reason=reason,  # type: ignore[arg-type]
            bid=bid,
            bid_qty=bid_qty,
            ask=ask,
            ask_qty=ask_qty,
            mid=mid,
            microprice=micro,
            spread_bps=spread,
            imbalance=imb,
            last_price=self.last_price,
            last_qty=self.last_qty,
            vwap=vwap.notional / vwap.volume if vwap.volume > 0 else None,
        )
        return base

    def _invalid(self, ev: BookSnapshot | BookDelta | Trade) -> str | None:
        if isinstance(ev, Trade):
            if 0.0 < ev.price < _INF and 0.0 < ev.qty < _INF:
                return None
            return f"trade price {ev.price} / qty {ev.qty} not positive finite"
        if isinstance(ev, BookDelta) and ev.last_seq < ev.first_seq:
            return f"update range runs backwards: {ev.first_seq}..{ev.last_seq}"
        if levels_ok(ev.bids) and levels_ok(ev.asks):
            return None
        return "book level with a non-positive or non-finite price or a negative size"

    def _finding(self, kind: Any, ts: int, detail: str) -> DataQuality:
        self._count(kind)
        return DataQuality(ts=ts, venue=self.venue, symbol=self.symbol, kind=kind, detail=detail)

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def quality_counts(self) -> dict[str, int]:
        """Every finding so far by kind, the book's and the market's."""
        out = dict(self.counts)
        for k in ("gap", "crossed", "duplicate", "stale", "out_of_order", "resync"):
            if k in self.book.counts:
                out[k] = out.get(k, 0) + self.book.counts[k]
        return out

    # --- recovery ----------------------------------------------------------------------

    def state(self) -> tuple[object, ...]:
        return (
            self.book.state(),
            self.vwap.state(),
            tuple(b.state() for b in self.bars),
            self.last_top,
            self.last_price,
            self.last_qty,
            self.last_ts,
            tuple(self.recent_trades),
            tuple(sorted(self.counts.items())),
        )

    @classmethod
    def from_state(cls, venue: str, symbol: str, config: TicksConfig, state: Any) -> MarketTicks:
        m = cls(venue, symbol, config)
        book, vwap, bars, top, price, qty, last_ts, recent, counts = state
        m.book.restore(book)
        m.vwap.restore(vwap)
        for b, s in zip(m.bars, bars, strict=False):
            b.restore(s)
        m.last_top = top
        m.last_price = price
        m.last_qty = qty
        m.last_ts = int(last_ts)
        m.recent_trades.extend(recent)
        m._recent_set = set(m.recent_trades)
        m.counts = dict(counts)
        dues = [d for d in (b.next_due() for b in m.bars) if d is not None]
        m._bars_due = min(dues, default=_NEVER)
        return m


# --- the Bytewax operator ------------------------------------------------------------------

MarketState = tuple[str, str, tuple[object, ...], tuple[object, ...] | None]


class _TicksLogic(StatefulBatchLogic[BookSnapshot | BookDelta | Trade, Output, MarketState]):
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
    ) -> None:
        self.step_id = step_id
        self.config = config
        self.market: MarketTicks | None = None
        lag = None if bounded else config.align_ms * _MS
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

    def on_batch(self, values: list[BookSnapshot | BookDelta | Trade]) -> tuple[list[Output], bool]:
        m = self.market
        if m is None:
            first = values[0]
            m = self.market = MarketTicks(first.venue, first.symbol, self.config)
        self._in.inc(len(values))
        feed = m.feed
        out: list[Output] = []
        if self.merger is None:
            for v in values:
                feed(v, out)
        else:
            push = self.merger.push
            for v in values:
                for ev in push(v):
                    feed(ev, out)
            out.extend(self.merger.take_late())
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


def _key(ev: BookSnapshot | BookDelta | Trade) -> str:
    return f"{ev.venue}:{ev.symbol}"


@operator
def ticks_op(
    step_id: str,
    book: Stream[BookSnapshot | BookDelta] | Stream[BookSnapshot | BookDelta | Trade],
    trades: Stream[Trade] | None = None,
    config: TicksConfig | None = None,
    *,
    bounded: bool = False,
) -> TicksOut:
    """Book updates and trades -> ticks, bars, data-quality findings and dead letters.

    Keyed by ``venue:symbol``. ``book`` may also carry the trades (one stream of a recorded
    file keeps book and trades in recorded order, which makes the output identical on any
    number of workers); pass ``trades=None`` then. Two streams (two Kafka topics) interleave
    in event-time order (``config.align_ms``, see
    :class:`~makerflow.operators.align.TwoStreamMerger`); ``bounded`` says the inputs end
    (a replay), so the merge waits without a time bound.
    """
    cfg = config or TicksConfig()
    up: Stream[BookSnapshot | BookDelta | Trade] = (
        book if trades is None else op.merge("merge", book, trades)
    )
    keyed = op.key_on("key", up, _key)
    align = trades is not None and cfg.align_ms > 0
    out = op.stateful_batch(
        "market", keyed, lambda resume: _TicksLogic(step_id, cfg, align, resume, bounded)
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
