"""The inputs of balance reconciliation: fills and transfers made into legs (one posting on
one ``account:asset`` balance each), and balance snapshots checked to be possibly true; what
cannot be booked becomes a dead letter saying why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from makerflow.operators.recon_config import ReconConfig
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import (
    BalanceSnapshot,
    DeadLetter,
    Event,
    Fill,
    Transfer,
    balance_key,
)
from makerflow.schemas.scopes import symbol_assets
from makerflow.schemas.topics import BALANCES, FILLS, TRANSFERS


@dataclass(frozen=True)
class Leg:
    """One posting on one ``account:asset`` balance, with the event it came from."""

    account: str
    asset: str
    ts: int
    posting_id: str
    """Unique per change: a duplicate delivery of the same fill has the same id."""
    amount: float
    kind: Literal["fill", "transfer"]
    origin: Fill | Transfer

    @property
    def key(self) -> str:
        return balance_key(self.account, self.asset)


_SOURCE_TOPIC = {Fill: FILLS.name, Transfer: TRANSFERS.name, BalanceSnapshot: BALANCES.name}


def dead_event(cfg: ReconConfig, ev: Event, reason: str) -> DeadLetter:
    return dead_letter(cfg.step, reason, encode(ev), ts=ev.ts, topic=_SOURCE_TOPIC.get(type(ev)))


def _finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def fill_legs(fill: Fill, cfg: ReconConfig) -> list[Leg] | DeadLetter:
    """The postings a fill makes on each asset it touches (fee merged into its asset's leg),
    or a dead letter if the fill cannot be booked."""
    try:
        base, quote = symbol_assets(fill.symbol)
    except ValueError as exc:
        return dead_event(cfg, fill, f"fill {fill.trade_id}: {exc}")
    if not _finite(fill.price, fill.qty, fill.fee):
        return dead_event(
            cfg, fill, f"fill {fill.trade_id}: price, qty and fee must be finite numbers"
        )
    if fill.price <= 0 or fill.qty <= 0 or fill.fee < 0:
        return dead_event(
            cfg,
            fill,
            f"fill {fill.trade_id}: needs price > 0, qty > 0, fee >= 0"
            f" (got price={fill.price}, qty={fill.qty}, fee={fill.fee})",
        )
    if fill.fee and not fill.fee_asset:
        return dead_event(cfg, fill, f"fill {fill.trade_id}: fee {fill.fee} without a fee_asset")
    sign = 1.0 if fill.side == "buy" else -1.0
    amounts: dict[str, float] = {base: sign * fill.qty}
    amounts[quote] = amounts.get(quote, 0.0) - sign * fill.price * fill.qty
    if fill.fee:
        amounts[fill.fee_asset] = amounts.get(fill.fee_asset, 0.0) - fill.fee
    unknown = sorted(a for a in amounts if cfg.precision(a) is None)
    if unknown:
        return dead_event(cfg, fill, f"fill {fill.trade_id}: unknown asset(s) {', '.join(unknown)}")
    pid = f"fill:{fill.venue}:{fill.symbol}:{fill.trade_id}"
    return [
        Leg(fill.account, asset, fill.ts, pid, amount, "fill", fill)
        for asset, amount in amounts.items()
    ]


def transfer_leg(tr: Transfer, cfg: ReconConfig) -> Leg | DeadLetter:
    """A transfer's posting, or a dead letter if it cannot be booked."""
    if not _finite(tr.amount):
        return dead_event(cfg, tr, f"transfer {tr.transfer_id}: amount must be a finite number")
    if cfg.precision(tr.asset) is None:
        return dead_event(cfg, tr, f"transfer {tr.transfer_id}: unknown asset {tr.asset!r}")
    pid = f"transfer:{tr.venue}:{tr.transfer_id}"
    return Leg(tr.account, tr.asset, tr.ts, pid, tr.amount, "transfer", tr)


def check_snapshot(snap: BalanceSnapshot, cfg: ReconConfig) -> BalanceSnapshot | DeadLetter:
    """``snap`` if it can be a true balance, else a dead letter saying why not."""
    where = f"balance snapshot {snap.account}:{snap.asset} at {snap.ts}"
    precision = cfg.precision(snap.asset)
    if precision is None:
        return dead_event(cfg, snap, f"{where}: unknown asset {snap.asset!r} (add it to assets)")
    if not _finite(snap.free, snap.used, snap.total):
        return dead_event(cfg, snap, f"{where}: free, used and total must be finite numbers")
    if snap.free < 0 or snap.used < 0 or snap.total < 0:
        return dead_event(
            cfg,
            snap,
            f"{where}: negative balance (free={snap.free}, used={snap.used}, total={snap.total})",
        )
    if abs(snap.free + snap.used - snap.total) > max(precision, 1e-9 * snap.total):
        return dead_event(
            cfg,
            snap,
            f"{where}: free + used ({snap.free} + {snap.used}) != total ({snap.total})",
        )
    return snap
