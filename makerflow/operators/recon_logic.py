"""Balance reconciliation in event-time windows: pure logic, no I/O, no clock.

Per ``account:asset`` balance, time is cut into tumbling windows ``[start, start + length)``
aligned to the Unix epoch. A window is reconciled at its *closing snapshot*, the exchange's
latest balance snapshot inside the window:

    expected = opening + sum(postings in (opening.ts, closing.ts])
    reported = closing.total
    difference = reported - expected

where ``opening`` is the exchange's last snapshot before the window and a *posting* is one
change we know of: a fill's base leg (+qty for a buy, -qty for a sell), its quote leg
(-price*qty for a buy, +price*qty for a sell), its fee (-fee, in whichever asset it is paid)
and transfers (a deposit is positive, a withdrawal negative). A snapshot at time ``t`` is taken
to include every posting with ``ts <= t``, so a fill after the window's closing snapshot is
reconciled in the next window; when the exchange is polled at window ends, "the postings since
the opening" are exactly "the fills of the window". Anchoring every window on the exchange's own
snapshot (never on our previous expectation) keeps a break in the window it happened in.

A window is reported once the key's watermark passes the window's end by ``grace``; it stays
amendable for ``allowed_lateness`` more. The watermark is the time of the key's latest balance
snapshot: the exchange's next word is what closes a window, so fills that run ahead of the
balances (another topic, read a batch ahead) never close one early. Snapshots that run ahead of
the fills by more than ``grace`` make those fills late: set ``grace`` above that skew (a replay
of topics read side by side needs a large one). A late event for a reported window emits a new
``version`` of each report it changes, its reason starting with ``amended``. Events later than
``allowed_lateness`` are dead letters, as are snapshots that cannot be true (negative, NaN, an
unknown asset) and fills that cannot be booked. A window in which a balance has neither a
posting nor a snapshot has nothing to reconcile and gives no report; one with postings but no
snapshot is a BREAK with ``reported = None`` (unconfirmed: the balance feed said nothing), and
its postings are reconciled with the next window that has a snapshot.

What one window holds and how its verdict is reached is :mod:`makerflow.operators.recon_window`;
this module moves the windows through event time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from makerflow.operators.recon_alerts import report_alert
from makerflow.operators.recon_config import ReconConfig as ReconConfig
from makerflow.operators.recon_config import window_start
from makerflow.operators.recon_inputs import (
    Leg,
    check_snapshot,
    dead_event,
    fill_legs,
    transfer_leg,
)
from makerflow.operators.recon_window import (
    Posting,
    ReconState,
    Reported,
    Snap,
    Window,
    WindowState,
    judge,
    tolerance,
)
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    DeadLetter,
    Event,
    Fill,
    ReconReport,
    Transfer,
    balance_key,
)

# Read through this module by the operator and the backtest.
__all__ = [
    "BalanceRecon",
    "ReconConfig",
    "ReconOutput",
    "ReconState",
    "check_snapshot",
    "fill_legs",
    "reconcile_all",
]

ReconOutput = ReconReport | Alert | DeadLetter


class BalanceRecon:
    """Reconciliation of one ``account:asset`` balance.

    Feed it legs (:meth:`on_leg`) and checked snapshots (:meth:`on_snapshot`) in any order;
    each call returns the reports, alerts and dead letters it produced. :meth:`flush` reports
    every pending window (end of input).
    """

    def __init__(self, account: str, asset: str, cfg: ReconConfig) -> None:
        self.account = account
        self.asset = asset
        self.cfg = cfg
        self._length = cfg.window_ns
        self._precision = cfg.precision(asset) or 0.0
        self.watermark: int | None = None
        self._horizon: int | None = None
        """Every window before this is final: events older than it are too late."""
        self._anchor: Snap | None = None
        """Last snapshot of the windows already let go."""
        self._carry: tuple[Posting, ...] = ()
        """Postings of windows let go that came after ``_anchor``."""
        self._windows: dict[int, Window] = {}
        # Indexes rebuilt from the state above (never snapshotted): where each posting id is
        # held (-1: in the carry), and the newest reported window.
        self._ids: dict[str, int] = {}
        self._max_reported: int | None = None

    # -- state ------------------------------------------------------------------------------

    def state(self) -> ReconState:
        return ReconState(
            account=self.account,
            asset=self.asset,
            watermark=self.watermark,
            horizon=self._horizon,
            anchor=self._anchor,
            carry=self._carry,
            windows=tuple(
                WindowState(
                    s, tuple(w.postings.values()), w.first, w.last, w.duplicates, w.reported
                )
                for s, w in sorted(self._windows.items())
            ),
        )

    @classmethod
    def from_state(cls, state: ReconState, cfg: ReconConfig) -> BalanceRecon:
        r = cls(state.account, state.asset, cfg)
        r.watermark = state.watermark
        r._horizon = state.horizon
        r._anchor = state.anchor
        r._carry = state.carry
        for ws in state.windows:
            r._windows[ws.start] = Window(
                {p.posting_id: p for p in ws.postings},
                ws.first,
                ws.last,
                ws.duplicates,
                ws.reported,
            )
            r._ids.update((p.posting_id, ws.start) for p in ws.postings)
            if ws.reported is not None:
                r._max_reported = ws.start
        r._ids.update((p.posting_id, -1) for p in state.carry)
        return r

    @property
    def open_windows(self) -> int:
        """Windows held in state (reported or not)."""
        return len(self._windows)

    @property
    def oldest_window(self) -> int | None:
        """Start of the oldest window held, if any."""
        return min(self._windows, default=None)

    @property
    def pending_windows(self) -> int:
        """Windows not reported yet."""
        return sum(1 for w in self._windows.values() if w.reported is None)

    # -- inputs -----------------------------------------------------------------------------

    def on_leg(self, leg: Leg) -> list[ReconOutput]:
        """Book one posting (a fill leg or a transfer)."""
        # Each leg is judged by its own balance, so a fill too late for both gives two letters.
        late = self._too_late(leg.ts, leg.origin, f"{leg.asset} leg of {leg.kind} {leg.posting_id}")
        if late is not None:
            return [late]
        start = window_start(leg.ts, self._length)
        held = self._ids.get(leg.posting_id)
        if held is not None:
            first = (
                self._windows[held].postings[leg.posting_id]
                if held in self._windows
                else next(p for p in self._carry if p.posting_id == leg.posting_id)
            )
            if first.ts != leg.ts or not math.isclose(first.amount, leg.amount, rel_tol=1e-12):
                # The same trade id saying something else is not a repeat: a person must look.
                return [
                    dead_event(
                        self.cfg,
                        leg.origin,
                        f"{leg.asset} leg of {leg.posting_id} conflicts with the one booked"
                        f" (ts {first.ts}, amount {first.amount:.12g}; now ts {leg.ts},"
                        f" amount {leg.amount:.12g}); kept the first",
                    )
                ]
            # At-least-once delivery repeats fills: book once, count the repeat for the report.
            if held in self._windows:
                self._windows[held].duplicates += 1
            return []
        w = self._window(start)
        w.postings[leg.posting_id] = Posting(leg.ts, leg.posting_id, leg.amount, leg.kind)
        self._ids[leg.posting_id] = start
        # Only the exchange's snapshots move event time: fills read ahead of the balances (a
        # batch of another topic) must not close windows whose closing snapshot is yet to come.
        return self._after_change(start, leg.ts, False, f"late {leg.kind} {leg.posting_id}")

    def on_snapshot(self, snap: BalanceSnapshot) -> list[ReconOutput]:
        """Take the exchange's word on the balance (already checked by :func:`check_snapshot`)."""
        late = self._too_late(snap.ts, snap, "balance snapshot")
        if late is not None:
            return [late]
        start = window_start(snap.ts, self._length)
        w = self._window(start)
        s = Snap(snap.ts, snap.total)
        # On equal timestamps the later arrival wins: it is the exchange's newer word.
        if w.first is None or s.ts < w.first.ts:
            w.first = s
        if w.last is None or s.ts >= w.last.ts:
            w.last = s
        return self._after_change(start, snap.ts, True, f"late balance snapshot at {snap.ts}")

    def advance(self, watermark: int) -> list[ReconOutput]:
        """Move event time to ``watermark`` (never back): report and let go of windows."""
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        out = self._report_due(watermark - self.cfg.grace_ns)
        self._expire(watermark - self.cfg.grace_ns - self.cfg.lateness_ns)
        return out

    def flush(self) -> list[ReconOutput]:
        """Report every window not reported yet (end of input); state is kept."""
        return self._report_due(None)

    # -- internals --------------------------------------------------------------------------

    def _window(self, start: int) -> Window:
        w = self._windows.get(start)
        if w is None:
            w = self._windows[start] = Window()
        return w

    def _too_late(self, ts: int, origin: Event, what: str) -> DeadLetter | None:
        if self._horizon is None or ts >= self._horizon:
            return None
        return dead_event(
            self.cfg,
            origin,
            f"{what} at {ts} for {self.account}:{self.asset} arrived after its window's"
            f" allowed lateness ({self.cfg.allowed_lateness_s}s); the window is final",
        )

    def _after_change(self, start: int, ts: int, is_snapshot: bool, what: str) -> list[ReconOutput]:
        out: list[ReconOutput] = []
        if self._max_reported is not None and start <= self._max_reported:
            out.extend(self._amend(start, ts, is_snapshot, what))
        if is_snapshot:
            out.extend(self.advance(ts))
        if (
            self.watermark is not None
            and start + self._length <= self.watermark - self.cfg.grace_ns
        ):
            # An event that opened a window already past its close reports it at once.
            out.extend(self._report_due(self.watermark - self.cfg.grace_ns))
        return out

    def _report_due(self, until: int | None) -> list[ReconOutput]:
        out: list[ReconOutput] = []
        for start in sorted(self._windows):
            w = self._windows[start]
            if until is not None and start + self._length > until:
                break
            if w.reported is None:
                out.extend(self._emit(start, w, None))
        return out

    def _amend(self, start: int, ts: int, is_snapshot: bool, what: str) -> list[ReconOutput]:
        """Re-emit the reported windows a late event at ``ts`` (in window ``start``) changes:
        from its window up to the first window whose closing snapshot already covers it (for
        a snapshot: the next window with a snapshot, whose opening it may be)."""
        out: list[ReconOutput] = []
        for s in sorted(self._windows):
            if s < start:
                continue
            w = self._windows[s]
            if w.reported is not None:
                out.extend(self._emit(s, w, what))
            if w.last is not None and (s > start or (not is_snapshot and w.last.ts >= ts)):
                break
        return out

    def _expire(self, until: int) -> None:
        for start in sorted(self._windows):
            w = self._windows[start]
            if start + self._length > until or w.reported is None:
                break
            if w.last is not None:
                for p in self._carry:
                    del self._ids[p.posting_id]
                self._anchor = w.last
                self._carry = tuple(p for p in w.postings.values() if p.ts > w.last.ts)
            else:
                self._carry = self._carry + tuple(w.postings.values())
            for pid in w.postings:
                del self._ids[pid]
            self._ids.update((p.posting_id, -1) for p in self._carry)
            del self._windows[start]
        # Every window ending by ``until`` is final now, held or not: older events are late.
        final = window_start(until, self._length)
        if self._horizon is None or final > self._horizon:
            self._horizon = final

    def _interval(self, start: int) -> tuple[Snap | None, list[Posting], bool]:
        """(opening snapshot, postings after it up to the window's closing snapshot,
        whether the opening is this window's own first snapshot: a baseline)."""
        opening = self._anchor
        pending = list(self._carry)
        for s in sorted(self._windows):
            w = self._windows[s]
            if s == start:
                break
            if w.last is not None:
                opening = w.last
                pending = [p for p in w.postings.values() if p.ts > w.last.ts]
            else:
                pending.extend(w.postings.values())
        w = self._windows[start]
        close_ts = w.last.ts if w.last is not None else None
        if opening is None and w.first is not None:
            first = w.first
            last_ts = w.last.ts if w.last is not None else first.ts
            return first, [p for p in w.postings.values() if first.ts < p.ts <= last_ts], True
        mine = [p for p in w.postings.values() if close_ts is None or p.ts <= close_ts]
        return opening, pending + mine, False

    def tolerance(self, expected: float, reported: float, postings: int) -> float:
        """The largest difference that is not a break (see :func:`recon_window.tolerance`)."""
        return tolerance(self.cfg, self._precision, expected, reported, postings)

    def _emit(self, start: int, w: Window, amended: str | None) -> list[ReconOutput]:
        opening_snap, postings, baseline = self._interval(start)
        v = judge(
            self.cfg,
            self.asset,
            self._precision,
            opening_snap,
            postings,
            baseline,
            w.last,
            w.duplicates,
        )
        reason = v.reason
        prev = w.reported
        now = Reported(
            version=1 if prev is None else prev.version + 1,
            opening=v.opening,
            expected=v.expected,
            reported=v.reported,
            fills=v.fills,
            status=v.status,
        )
        if prev is not None and prev.same_as(now):
            return []
        if prev is not None:
            reason = f"amended (v{now.version}, after {amended}); {reason}".rstrip("; ")
        w.reported = now
        if self._max_reported is None or start > self._max_reported:
            self._max_reported = start
        report = ReconReport(
            ts=start + self._length - 1,
            account=self.account,
            asset=self.asset,
            window_start=start,
            window_end=start + self._length,
            version=now.version,
            opening=v.opening,
            expected=v.expected,
            reported=v.reported,
            difference=v.difference,
            tolerance=v.tolerance,
            fills_matched=v.fills,
            status=v.status,
            reason=reason,
        )
        out: list[ReconOutput] = [report]
        alert = report_alert(report, prev.status if prev is not None else None)
        if alert is not None:
            out.append(alert)
        return out


def reconcile_all(
    events: Iterable[Fill | Transfer | BalanceSnapshot], cfg: ReconConfig
) -> list[ReconOutput]:
    """Reconcile a whole recorded session in arrival order, then flush: the reference the
    Bytewax operator must agree with, and handy for notebooks and backtests."""
    keys: dict[str, BalanceRecon] = {}
    out: list[ReconOutput] = []

    def recon(account: str, asset: str) -> BalanceRecon:
        k = balance_key(account, asset)
        if k not in keys:
            keys[k] = BalanceRecon(account, asset, cfg)
        return keys[k]

    for ev in events:
        if isinstance(ev, Fill):
            legs = fill_legs(ev, cfg)
            if isinstance(legs, DeadLetter):
                out.append(legs)
                continue
            for leg in legs:
                out.extend(recon(leg.account, leg.asset).on_leg(leg))
        elif isinstance(ev, Transfer):
            tleg = transfer_leg(ev, cfg)
            out.extend(
                [tleg]
                if isinstance(tleg, DeadLetter)
                else recon(tleg.account, tleg.asset).on_leg(tleg)
            )
        else:
            snap = check_snapshot(ev, cfg)
            out.extend(
                [snap]
                if isinstance(snap, DeadLetter)
                else recon(snap.account, snap.asset).on_snapshot(snap)
            )
    for k in sorted(keys):
        out.extend(keys[k].flush())
    return out
