"""Exposure per account and asset: the last balance snapshot plus the fill legs since, each
leg once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from makerflow.operators.bounded_set import BoundedSet
from makerflow.schemas.events import Fill
from makerflow.schemas.scopes import symbol_assets

_LEG_MEMORY = 8192
"""Per account and asset: leg ids remembered to drop a fill delivered again."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One asset movement of one account caused by a fill (a base leg, a quote leg or a fee)."""

    account: str
    asset: str
    ts: int
    amount: float
    fill_id: str
    kind: str = "base"
    """``base``, ``quote`` or ``fee``: a fee in the base asset is a second leg of that asset."""

    @property
    def key(self) -> str:
        """Unique per leg of a fill: a fill delivered again has the same keys."""
        return f"{self.fill_id}:{self.kind}"


def fill_legs(fill: Fill) -> tuple[Leg, ...]:
    """The base leg, the quote leg and the fee of ``fill``."""
    base, quote = symbol_assets(fill.symbol)
    sign = 1.0 if fill.side == "buy" else -1.0
    fid = f"{fill.venue}:{fill.symbol}:{fill.trade_id}"
    legs = [
        Leg(fill.account, base, fill.ts, sign * fill.qty, fid, "base"),
        Leg(fill.account, quote, fill.ts, -sign * fill.qty * fill.price, fid, "quote"),
    ]
    if fill.fee and fill.fee_asset:
        legs.append(Leg(fill.account, fill.fee_asset, fill.ts, -fill.fee, fid, "fee"))
    return tuple(legs)


@dataclass(slots=True)
class ExposureBook:
    """Exposure of one account in one asset: the last balance snapshot's total plus every fill
    leg after it. Legs at or before the snapshot are already in it, whatever order the two
    streams arrive in, so the result does not depend on arrival order; a leg seen again (a fill
    delivered twice) is dropped by its key."""

    balance: float = 0.0
    balance_ts: int | None = None
    legs: list[tuple[int, float]] = field(default_factory=list)
    seen: BoundedSet = field(default_factory=lambda: BoundedSet(_LEG_MEMORY))

    def on_leg(self, ts: int, amount: float, key: str | None = None) -> float:
        """Add a leg (once per ``key``, when given) and return the exposure."""
        if key is not None:
            if key in self.seen:
                return self.exposure
            self.seen.add(key)
        if self.balance_ts is None or ts > self.balance_ts:
            self.legs.append((ts, amount))
        return self.exposure

    def on_balance(self, ts: int, total: float) -> float:
        if self.balance_ts is None or ts >= self.balance_ts:
            self.balance, self.balance_ts = total, ts
            self.legs = [(t, a) for t, a in self.legs if t > ts]
        return self.exposure

    @property
    def exposure(self) -> float:
        return self.balance + sum(a for _, a in self.legs)

    def snapshot(
        self,
    ) -> tuple[float, int | None, tuple[tuple[int, float], ...], tuple[object, ...]]:
        return self.balance, self.balance_ts, tuple(self.legs), self.seen.items()

    @classmethod
    def restore(cls, snap: tuple[Any, ...]) -> ExposureBook:
        """From :meth:`snapshot` (or the three-element snapshot of before leg keys)."""
        balance, balance_ts, legs, *rest = snap
        seen = BoundedSet(_LEG_MEMORY, rest[0] if rest else ())
        return cls(float(balance), balance_ts, list(legs), seen)
