"""A pure L2 order book built from snapshots and diff updates, with sequence checks.

Each side keeps every level in a dict keyed by the parsed price and its best levels in a
short sorted list (``bisect``: O(log n)), so the best price is the list's last element
(O(1)), an update far from the top is one dict write and no update scans the levels (see
:class:`BookSide`). Prices are the floats parsed once from the venue's decimal strings, so
equal strings give equal keys.

Sequence rules (Binance's documented sync rule, which other venues' ids fit too):

* spot style (``prev_seq is None``): a delta applies when ``first_seq <= seq + 1 <= last_seq``;
  ``last_seq <= seq`` is old (duplicate or stale) and ignored; ``first_seq > seq + 1`` skips ids.
* futures style (``prev_seq`` set): a delta applies when ``prev_seq == seq``; right after a
  snapshot also when ``first_seq <= seq <= last_seq``.

A delta that skips ids is held in a small reorder buffer (an out-of-order arrival is repaired
when the missing delta comes); when the buffer overflows the book is marked invalid (a gap),
keeps buffering deltas and waits for a snapshot, then replays what it held with the sync rule.
A crossed book is reported and, by default, also invalidates the book until a snapshot.

Depth is bounded (``max_depth`` to 1.25 x ``max_depth`` levels per side): the worst levels
are pruned, a new level no better than a pruned one is not stored, and the best key ever
dropped is remembered. Every real level better than it is kept, so the top of book is exact;
when the price moves so far that the best kept level is no better than a dropped one, the
book reports a gap and waits for a snapshot rather than show a wrong best price. Deeper
levels can be missing after the book is eaten through, so keep the bound well above the
levels a strategy reads. The default 5000 covers what Binance's diff streams add beyond its
1000-level snapshots: on the recorded BTC data a 1000-level bound runs out within ten
minutes, 2000 never does.

The book never does I/O and never reads a clock: every finding is returned as a
:class:`DataQuality` event for the caller to route and count.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Any, Literal

from makerflow.schemas.events import BookDelta, BookSnapshot, DataQuality, Level

QualityKind = Literal["gap", "crossed", "duplicate", "stale", "out_of_order", "silent", "resync"]


_INF = math.inf
_CACHE = 64
"""How many of the best levels a side keeps sorted."""
_REFILL = 16
"""Re-sort the cache from all levels when fewer than this many remain in it."""


class BookSide:
    """One side of a book: every level in a dict (key -> quantity), and the best ``_CACHE``
    keys in a sorted list with the best at the end.

    Bids use the price as key, asks its negation, so "best" is always ``keys[-1]`` (O(1)).
    Most diff updates touch levels far from the top (on Binance about 4 in 5): those are one
    dict write. Only levels better than the worst cached one go through a bisect of the short
    list. Every level not in the list is worse than ``keys[0]``; when removals thin the list
    below ``_REFILL`` it is rebuilt from the dict (rare: the top must be eaten through).

    Depth is bounded by pruning the worst levels once a side holds more than
    ``max_depth * 1.25`` (amortised, so a full side does not sort on every update).
    """

    __slots__ = ("_sign", "floor", "keys", "max_depth", "qty")

    def __init__(self, is_bid: bool, max_depth: int) -> None:
        self._sign = 1.0 if is_bid else -1.0
        self.max_depth = max_depth
        self.keys: list[float] = []
        self.qty: dict[float, float] = {}
        self.floor = -math.inf
        """The best key ever dropped by the depth bound: every real level better than it is
        kept; levels at or below it may be missing."""

    @property
    def limit(self) -> int:
        """The most levels a side holds before it prunes back to ``max_depth``."""
        return self.max_depth + self.max_depth // 4

    def clear(self) -> None:
        self.keys.clear()
        self.qty.clear()
        self.floor = -math.inf

    @property
    def exhausted(self) -> bool:
        """True when the best kept level is not known to be the real best any more."""
        keys = self.keys
        return keys[-1] <= self.floor if keys else self.floor > -math.inf

    def load(self, levels: Iterable[Level]) -> None:
        """Replace every level (a snapshot), keeping the best ``max_depth``."""
        s = self._sign
        self.qty = {s * p: q for p, q in levels if q > 0.0}
        self.floor = -math.inf
        self._prune(self.max_depth)

    def _prune(self, keep: int) -> None:
        ordered = sorted(self.qty)
        cut = len(ordered) - keep
        if cut > 0:
            qty = self.qty
            for k in ordered[:cut]:
                del qty[k]
            if ordered[cut - 1] > self.floor:
                self.floor = ordered[cut - 1]
            ordered = ordered[cut:]
        self.keys = ordered[-_CACHE:]

    def update(self, price: float, quantity: float) -> None:
        """Set one level; quantity 0 removes it (removing an unknown level is a no-op)."""
        self.apply(((price, quantity),))

    def apply(self, levels: Iterable[Level]) -> None:
        """Set many levels (one diff update's side), in order."""
        s = self._sign
        qty = self.qty
        keys = self.keys
        floor = self.floor
        # The worst cached key: a level below it (most of a diff update) is one dict write or
        # pop, with no look at the sorted list. With nothing cached every level takes the
        # long way, which handles the empty cache.
        edge = keys[0] if keys else -_INF
        stale = False
        for p, q in levels:
            k = s * p
            if k < edge:
                if q > 0.0:
                    # Beyond the bounded depth (k <= floor) only a level already kept is
                    # written, like the levels already dropped.
                    if k > floor or k in qty:
                        qty[k] = q
                elif k in qty:
                    del qty[k]
            elif q > 0.0:
                if k in qty:
                    qty[k] = q
                elif k > floor:
                    qty[k] = q
                    if keys:
                        insort(keys, k)
                        if len(keys) > _CACHE:
                            del keys[0]  # still in the dict, just no longer cached
                        edge = keys[0]
                    elif len(qty) == 1:
                        keys.append(k)
                        edge = k
                    else:
                        stale = True
            elif k in qty:
                del qty[k]
                if keys:
                    del keys[bisect_left(keys, k)]
                    if keys:
                        edge = keys[0]
                    else:
                        edge = -_INF
                        if qty:
                            # The cache ran dry mid-update: rebuild it after the loop.
                            stale = True
        if len(qty) > self.limit:
            self._prune(self.max_depth)
        elif stale or (len(keys) < _REFILL and len(keys) < len(qty)):
            self.keys = sorted(heapq.nlargest(_CACHE, qty))

    @property
    def best(self) -> Level | None:
        if not self.keys:
            return None
        k = self.keys[-1]
        return (self._sign * k, self.qty[k])

    def depth(self, n: int) -> float:
        """Total quantity over the best ``n`` levels."""
        if n <= 0:
            return 0.0
        keys = self.keys if n <= len(self.keys) else sorted(self.qty)
        return sum(map(self.qty.__getitem__, keys[-n:]))

    def levels(self, n: int | None = None) -> tuple[Level, ...]:
        """The best ``n`` levels (all if ``None``), best first."""
        s = self._sign
        if n is not None and n <= len(self.keys):
            keys = self.keys[-n:]
        else:
            ordered = sorted(self.qty)
            keys = ordered if n is None else ordered[-n:]
        return tuple((s * k, self.qty[k]) for k in reversed(keys))

    def __len__(self) -> int:
        return len(self.qty)


class OrderBook:
    """An L2 book for one market. ``apply`` takes a snapshot or a delta and returns the
    data-quality findings it caused (usually none)."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        *,
        max_depth: int = 5000,
        reorder_window: int = 4,
        resync_buffer: int = 2000,
        invalidate_on_cross: bool = True,
    ) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.venue = venue
        self.symbol = symbol
        self.bids = BookSide(True, max_depth)
        self.asks = BookSide(False, max_depth)
        self.seq = -1
        self.valid = False
        self.crossed = False
        self.reorder_window = reorder_window
        self.resync_buffer = resync_buffer
        self.invalidate_on_cross = invalidate_on_cross
        self._fresh = False
        """True between a snapshot and the first delta applied after it (futures sync rule)."""
        self._last_applied: tuple[int, int] | None = None
        self._ahead: list[BookDelta] = []
        """Deltas that arrived before the ones they follow (bounded by ``reorder_window``)."""
        self._held: list[BookDelta] = []
        """Deltas kept while the book is invalid, replayed on the next snapshot."""
        self.counts: dict[str, int] = {}
        self.ts = 0

    # --- reading -----------------------------------------------------------------------

    @property
    def best_bid(self) -> Level | None:
        return self.bids.best

    @property
    def best_ask(self) -> Level | None:
        return self.asks.best

    def top(self) -> tuple[float, float, float, float] | None:
        """``(bid, bid_qty, ask, ask_qty)`` when the book is valid with both sides."""
        if not self.valid or not self.bids.keys or not self.asks.keys:
            return None
        bk = self.bids.keys[-1]
        ak = self.asks.keys[-1]
        return (bk, self.bids.qty[bk], -ak, self.asks.qty[ak])

    # --- state for recovery --------------------------------------------------------------

    def state(self) -> tuple[object, ...]:
        """An immutable, picklable copy of everything needed to rebuild this book."""
        return (
            self.seq,
            self.valid,
            self.crossed,
            self._fresh,
            self._last_applied,
            self.bids.levels(),
            self.asks.levels(),
            (self.bids.floor, self.asks.floor),
            tuple(self._ahead),
            tuple(self._held),
            tuple(sorted(self.counts.items())),
            self.ts,
        )

    def restore(self, state: Any) -> None:
        (seq, valid, crossed, fresh, last, bids, asks, floors, ahead, held, counts, ts) = state
        self.seq = int(seq)
        self.valid = bool(valid)
        self.crossed = bool(crossed)
        self._fresh = bool(fresh)
        self._last_applied = last
        self.bids.load(bids)
        self.asks.load(asks)
        self.bids.floor, self.asks.floor = floors
        self._ahead = list(ahead)
        self._held = list(held)
        self.counts = dict(counts)
        self.ts = int(ts)

    # --- writing -----------------------------------------------------------------------

    def apply(self, event: BookSnapshot | BookDelta) -> list[DataQuality]:
        if isinstance(event, BookSnapshot):
            return self.apply_snapshot(event)
        return self.apply_delta(event)

    def apply_snapshot(self, snap: BookSnapshot) -> list[DataQuality]:
        out: list[DataQuality] = []
        if self.valid and snap.seq < self.seq:
            # An older snapshot than the book we hold would rewind it; keep the book.
            return [self._finding("stale", snap.ts, f"snapshot seq {snap.seq} < book {self.seq}")]
        was_invalid = not self.valid and self.seq >= 0
        self.bids.load(snap.bids)
        self.asks.load(snap.asks)
        self.seq = snap.seq
        self.valid = True
        self.crossed = False
        self._fresh = True
        self._last_applied = None
        self._ahead.clear()
        self.ts = max(self.ts, snap.ts)
        self._count("snapshot")
        if was_invalid:
            out.append(self._finding("resync", snap.ts, f"snapshot at seq {snap.seq}"))
        out.extend(self._check_crossed(snap.ts))
        held, self._held = self._held, []
        for d in held:
            if not self.valid:
                self._hold(d)
                continue
            if self._is_old(d):
                # Covered by the snapshot: the documented sync rule drops these quietly.
                continue
            out.extend(self.apply_delta(d))
        return out

    def apply_delta(self, d: BookDelta) -> list[DataQuality]:
        if not self.valid:
            self._hold(d)
            self._count("ignored_invalid")
            return []
        if self._is_old(d):
            dup = self._last_applied == (d.first_seq, d.last_seq)
            kind: QualityKind = "duplicate" if dup else "stale"
            return [self._finding(kind, d.ts, f"update {d.first_seq}..{d.last_seq} <= {self.seq}")]
        if not self._connects(d):
            return self._ahead_of_book(d)
        out = self._apply_levels(d)
        if self._ahead and self.valid:
            out.extend(self._drain_ahead())
        return out

    # --- internals ---------------------------------------------------------------------

    def _is_old(self, d: BookDelta) -> bool:
        if d.prev_seq is not None and self._fresh:
            # Futures: right after a snapshot, an update ending at its id still applies.
            return d.last_seq < self.seq
        return d.last_seq <= self.seq

    def _connects(self, d: BookDelta) -> bool:
        if d.prev_seq is None:
            return d.first_seq <= self.seq + 1 <= d.last_seq
        if d.prev_seq == self.seq:
            return True
        return self._fresh and d.first_seq <= self.seq <= d.last_seq

    def _apply_levels(self, d: BookDelta) -> list[DataQuality]:
        if d.bids:
            self.bids.apply(d.bids)
        if d.asks:
            self.asks.apply(d.asks)
        self.seq = d.last_seq
        self._fresh = False
        self._last_applied = (d.first_seq, d.last_seq)
        if d.ts > self.ts:
            self.ts = d.ts
        if self.bids.exhausted or self.asks.exhausted:
            return self._exhausted(d.ts)
        return self._check_crossed(d.ts)

    def _exhausted(self, ts: int) -> list[DataQuality]:
        # The kept levels ran out past the depth bound: the real best may be a level that was
        # dropped, so the book cannot be trusted until a snapshot.
        side = "bid" if self.bids.exhausted else "ask"
        self._invalidate()
        detail = f"{side} side eaten through its {self.bids.max_depth} kept levels at {self.seq}"
        return [self._finding("gap", ts, detail)]

    def _check_crossed(self, ts: int) -> list[DataQuality]:
        b = self.bids.keys
        a = self.asks.keys
        crossed = bool(b and a and b[-1] >= -a[-1])
        if not crossed:
            self.crossed = False
            return []
        if self.crossed:
            return []
        self.crossed = True
        bid, ask = b[-1], -a[-1]
        finding = self._finding("crossed", ts, f"bid {bid} >= ask {ask} at seq {self.seq}")
        if self.invalidate_on_cross:
            self._invalidate()
        return [finding]

    def _ahead_of_book(self, d: BookDelta) -> list[DataQuality]:
        if len(self._ahead) < self.reorder_window:
            self._ahead.append(d)
            self._ahead.sort(key=lambda x: x.first_seq)
            self._count("held_ahead")
            return []
        missing = f"expected after {self.seq}, got {d.first_seq}..{d.last_seq}"
        if d.prev_seq is not None:
            missing += f" (prev {d.prev_seq})"
        finding = self._finding("gap", d.ts, missing)
        held = [*self._ahead, d]
        self._ahead = []
        self._invalidate()
        for h in held:
            self._hold(h)
        return [finding]

    def _drain_ahead(self) -> list[DataQuality]:
        out: list[DataQuality] = []
        progress = True
        while progress and self._ahead and self.valid:
            progress = False
            for i, d in enumerate(self._ahead):
                if self._is_old(d):
                    del self._ahead[i]
                    out.append(self._finding("duplicate", d.ts, f"update {d.first_seq} held"))
                    progress = True
                    break
                if self._connects(d):
                    del self._ahead[i]
                    out.append(
                        self._finding(
                            "out_of_order", d.ts, f"update {d.first_seq}..{d.last_seq} reordered"
                        )
                    )
                    out.extend(self._apply_levels(d))
                    progress = True
                    break
        return out

    def _hold(self, d: BookDelta) -> None:
        self._held.append(d)
        if len(self._held) > self.resync_buffer:
            del self._held[0]

    def _invalidate(self) -> None:
        self.valid = False

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _finding(self, kind: QualityKind, ts: int, detail: str) -> DataQuality:
        self._count(kind)
        return DataQuality(ts=ts, venue=self.venue, symbol=self.symbol, kind=kind, detail=detail)


def valid_levels(levels: Iterable[Level]) -> bool:
    """True when every level has a finite positive price and a finite quantity >= 0."""
    inf = math.inf
    # Chained comparisons are False for NaN, so this one test also rejects NaN.
    return all(0.0 < p < inf and 0.0 <= q < inf for p, q in levels)
