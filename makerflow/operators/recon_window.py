"""One balance reconciliation window: what it holds, its snapshot form, and its verdict.

A window holds the postings booked in it and the first and last exchange snapshot seen in it;
:func:`judge` turns an interval (opening snapshot, postings, closing snapshot) into the numbers
and words of a report. When the windows open, close, are amended and let go is
:class:`~makerflow.operators.recon_logic.BalanceRecon`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from makerflow.operators.recon_config import ReconConfig

Status = Literal["OK", "BREAK"]


@dataclass(frozen=True)
class Posting:
    ts: int
    posting_id: str
    amount: float
    kind: Literal["fill", "transfer"]


@dataclass(frozen=True)
class Snap:
    ts: int
    total: float


@dataclass(frozen=True)
class Reported:
    """What was last reported for a window: compared to decide whether to amend."""

    version: int
    opening: float
    expected: float
    reported: float | None
    fills: int
    status: Status

    def same_as(self, other: Reported) -> bool:
        """The same report but for float noise: re-emitting it would amend nothing."""

        def close(x: float | None, y: float | None) -> bool:
            if x is None or y is None:
                return x is y
            return x == y or abs(x - y) <= 1e-12 * max(abs(x), abs(y))

        return (
            self.status == other.status
            and self.fills == other.fills
            and close(self.opening, other.opening)
            and close(self.expected, other.expected)
            and close(self.reported, other.reported)
        )


@dataclass
class Window:
    postings: dict[str, Posting] = field(default_factory=dict)
    first: Snap | None = None
    last: Snap | None = None
    duplicates: int = 0
    reported: Reported | None = None


@dataclass(frozen=True)
class WindowState:
    start: int
    postings: tuple[Posting, ...]
    first: Snap | None
    last: Snap | None
    duplicates: int
    reported: Reported | None


@dataclass(frozen=True)
class ReconState:
    """An immutable, picklable copy of one key's state (for Bytewax snapshots)."""

    account: str
    asset: str
    watermark: int | None
    horizon: int | None
    anchor: Snap | None
    carry: tuple[Posting, ...]
    windows: tuple[WindowState, ...]


@dataclass(frozen=True)
class Verdict:
    """A window's numbers and the words that explain them, before versioning."""

    opening: float
    expected: float
    reported: float | None
    difference: float | None
    tolerance: float
    fills: int
    status: Status
    reason: str


def tolerance(
    cfg: ReconConfig, precision: float, expected: float, reported: float, postings: int
) -> float:
    """The largest difference that is not a break.

    Never finer than the asset's precision: the exchange rounds every amount it books to
    it, by up to half a unit, and the two snapshots are rounded too.
    """
    rounding = 0.5 * precision * (postings + 2)
    relative = cfg.rel_tolerance * max(abs(expected), abs(reported))
    return max(cfg.abs_tolerance, rounding, relative)


def judge(
    cfg: ReconConfig,
    asset: str,
    precision: float,
    opening_snap: Snap | None,
    postings: list[Posting],
    baseline: bool,
    closing: Snap | None,
    duplicates: int,
) -> Verdict:
    """Expected (opening plus postings) against reported (the closing snapshot)."""
    opening = opening_snap.total if opening_snap is not None else 0.0
    expected = opening + math.fsum(p.amount for p in postings)
    fills = sum(1 for p in postings if p.kind == "fill")
    transfers = len(postings) - fills
    reported = closing.total if closing is not None else None
    status: Status
    if reported is None:
        difference = None
        tol = tolerance(cfg, precision, expected, expected, len(postings))
        status = "BREAK"
        reason = (
            f"no exchange balance snapshot in the window: {len(postings)} posting(s)"
            " unconfirmed, carried into the next window"
        )
        if opening_snap is None:
            reason += "; no earlier snapshot either, so the opening is unknown (0)"
    else:
        difference = reported - expected
        tol = tolerance(cfg, precision, expected, reported, len(postings))
        status = "OK" if abs(difference) <= tol else "BREAK"
        if status == "BREAK":
            reason = (
                f"exchange reports {reported:.12g} {asset}, fills and transfers since"
                f" the last snapshot give {expected:.12g}: difference {difference:+.12g}"
                f" exceeds tolerance {tol:.3g}"
            )
        else:
            reason = ""
        if baseline:
            reason = "baseline: first exchange snapshot of this balance" + (
                f"; {reason}" if reason else ""
            )
    notes = []
    if transfers:
        notes.append(f"{transfers} transfer(s)")
    if duplicates:
        notes.append(f"{duplicates} duplicate posting(s) ignored")
    if notes:
        reason = "; ".join([r for r in (reason,) if r] + notes)
    return Verdict(opening, expected, reported, difference, tol, fills, status, reason)
