"""A market's base-asset position from our fills, re-anchored to the venue's balances.

:class:`Inventory` is pure (no I/O, no clock). It is fed fills that the order state has already
deduplicated (each trade once) and, where the venue reports them, balance snapshots of the base
asset.

- A fill moves the position by its quantity net of any fee paid in the base asset: buying 1 BTC
  with a 0.001 BTC fee is +0.999, selling 1 BTC with a 0.001 BTC fee is -1.001; a fee in the
  quote asset does not move the base.
- The position the quoter starts with already holds every trade made before the run, so a fill
  older than the run's start (the private stream's start-up backfill of recent trades) moves
  nothing. The start is the event time of the first market-data event; fills seen before it are
  held back until it is known.
- A balance snapshot of the base asset at ``ts`` reflects every fill up to ``ts`` (and none
  after). The first one (at or after the start) fixes the offset between the venue's total and
  our position (the position need not be the whole balance). Each later one is compared with
  what our fills say the position was at that time, and the position is re-anchored to the
  venue's word; when they disagree beyond ``tolerance`` an
  :class:`~makerflow.schemas.events.InventoryCorrection` says so.
- The race between the two streams: a fill with ``ts`` at or before the latest balance's that
  arrives after it is already in that balance, so it moves nothing; one at or before the first
  balance's moves the position and the offset together (that balance held it, and the offset
  was fixed without it). So the position ends the same whichever stream is first.

Memory: fills applied after the latest anchor are remembered (time and delta) until a balance
snapshot covers them, at most ``max_recent`` (the oldest are folded in past that).
"""

from __future__ import annotations

import math
from collections import deque

import msgspec

from makerflow.schemas.events import BalanceSnapshot, Fill, InventoryCorrection


def base_asset(symbol: str) -> str:
    """``BTC`` of ``BTC/USDT`` (and of ``BTC/USDT:USDT``)."""
    base, sep, _ = symbol.partition("/")
    if not sep or not base:
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE")
    return base


def base_delta(fill: Fill, base: str) -> float:
    """How much ``fill`` moves the base-asset balance, net of a fee paid in the base."""
    signed = fill.qty if fill.side == "buy" else -fill.qty
    if fill.fee and fill.fee_asset == base:
        signed -= fill.fee
    return signed


class InventorySnapshot(msgspec.Struct, frozen=True, kw_only=True):
    position: float
    start_ts: int | None
    anchor_ts: int | None
    offset: float | None
    offset_ts: int | None
    recent: tuple[tuple[int, float], ...]
    held: tuple[tuple[int, float], ...]
    backfill_ignored: int = 0


class Inventory:
    """One market's base-asset position. See the module docstring."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        account: str,
        position: float = 0.0,
        *,
        tolerance: float = 1e-9,
        max_recent: int = 4096,
        snapshot: InventorySnapshot | None = None,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.account = account
        self.base = base_asset(symbol)
        self.tolerance = tolerance
        self.position = position
        self.start_ts: int | None = None
        self.anchor_ts: int | None = None
        """Fills at or before this time are in the position already."""
        self.offset: float | None = None
        """Venue total minus our position, fixed by the first balance snapshot."""
        self.offset_ts: int | None = None
        """The time of that first balance snapshot."""
        self.backfill_ignored = 0
        """Fills that moved nothing because they were older than the run or a balance."""
        self._recent: deque[tuple[int, float]] = deque(maxlen=max_recent)
        self._held: list[tuple[int, float]] = []
        if snapshot is not None:
            self.position = snapshot.position
            self.start_ts = snapshot.start_ts
            self.anchor_ts = snapshot.anchor_ts
            self.offset = snapshot.offset
            self.offset_ts = snapshot.offset_ts
            self._recent.extend(snapshot.recent)
            self._held = list(snapshot.held)
            self.backfill_ignored = snapshot.backfill_ignored

    def start(self, ts: int) -> None:
        """The run starts at ``ts`` (event time); called once, by the first market event."""
        if self.start_ts is not None:
            return
        self.start_ts = ts
        held, self._held = self._held, []
        for fill_ts, delta in held:
            self._apply(fill_ts, delta)

    def on_fill(self, fill: Fill) -> float:
        """Apply a (deduplicated) fill; the position change it made (0 when the position
        already holds it: older than the run, or covered by a balance)."""
        delta = base_delta(fill, self.base)
        if self.start_ts is None:
            self._held.append((fill.ts, delta))
            return 0.0
        return self._apply(fill.ts, delta)

    def on_balance(self, snap: BalanceSnapshot) -> InventoryCorrection | None:
        """Re-anchor to the venue's total of the base asset at ``snap.ts``; the correction
        when it disagreed with our fills by more than ``tolerance``."""
        if snap.asset != self.base or snap.account != self.account or snap.venue != self.venue:
            return None
        if not math.isfinite(snap.total):
            raise ValueError(f"balance of {snap.asset} at {snap.ts} is {snap.total}")
        if self.start_ts is None or snap.ts < self.start_ts:
            return None  # before the run: the fills between it and the start are unknown
        if self.anchor_ts is not None and snap.ts <= self.anchor_ts:
            return None  # older than what we already anchored to
        after = math.fsum(d for t, d in self._recent if t > snap.ts)
        ours_then = self.position - after
        self._recent = deque(((t, d) for t, d in self._recent if t > snap.ts), self._recent.maxlen)
        self.anchor_ts = snap.ts
        if self.offset is None:
            self.offset = snap.total - ours_then
            self.offset_ts = snap.ts
            return None
        venue_then = snap.total - self.offset
        difference = venue_then - ours_then
        before = self.position
        self.position = venue_then + after
        if abs(difference) <= self.tolerance:
            return None
        return InventoryCorrection(
            ts=snap.ts,
            venue=self.venue,
            symbol=self.symbol,
            account=self.account,
            asset=self.base,
            before=before,
            after=self.position,
            balance=snap.total,
            difference=difference,
            tolerance=self.tolerance,
            reason=(
                f"the venue's {self.base} balance {snap.total} at {snap.ts} puts our position "
                f"at {venue_then}; our fills said {ours_then}"
            ),
        )

    def snapshot(self) -> InventorySnapshot:
        return InventorySnapshot(
            position=self.position,
            start_ts=self.start_ts,
            anchor_ts=self.anchor_ts,
            offset=self.offset,
            offset_ts=self.offset_ts,
            recent=tuple(self._recent),
            held=tuple(self._held),
            backfill_ignored=self.backfill_ignored,
        )

    def _apply(self, ts: int, delta: float) -> float:
        assert self.start_ts is not None
        if ts < self.start_ts:
            self.backfill_ignored += 1  # in initial_inventory already
            return 0.0
        if self.anchor_ts is not None and ts <= self.anchor_ts:
            if self.offset_ts is not None and ts <= self.offset_ts and self.offset is not None:
                # In the first balance, which fixed the offset without it.
                self.position += delta
                self.offset -= delta
                return delta
            self.backfill_ignored += 1  # a later balance re-anchored the position with it
            return 0.0
        self.position += delta
        self._recent.append((ts, delta))
        return delta
