"""Reconciliation test sessions: what an exchange books for a list of fills and transfers,
with balance snapshots taken just before each window's end, in event-time order.

The booking below is the exchange's side of the story, written independently of the code
under test: base +qty / -qty, quote -/+ price*qty, the fee off whichever asset it is paid in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from makerflow.operators.recon_config import NS, ReconConfig
from makerflow.schemas.events import BalanceSnapshot, Fill, ReconReport, Transfer

W = 60 * NS
T0 = 1_700_000_040 * NS  # a window start: 1_700_000_040 is a multiple of 60
CFG = ReconConfig(window_s=60, grace_s=5, allowed_lateness_s=300)

Event = Fill | Transfer | BalanceSnapshot


def fill(
    tid: str,
    ts: int,
    side: str,
    price: float,
    qty: float,
    fee: float = 0.0,
    fee_asset: str = "",
    *,
    symbol: str = "BTC/USDT",
    account: str = "main",
) -> Fill:
    return Fill(
        ts=ts,
        venue="local",
        symbol=symbol,
        account=account,
        trade_id=tid,
        side=side,  # type: ignore[arg-type]
        price=price,
        qty=qty,
        fee=fee,
        fee_asset=fee_asset,
    )


def snap(ts: int, asset: str, total: float, account: str = "main") -> BalanceSnapshot:
    return BalanceSnapshot(
        ts=ts, venue="local", account=account, asset=asset, free=total, total=total
    )


def deposit(ts: int, asset: str, amount: float, tid: str = "d1", account: str = "main") -> Transfer:
    return Transfer(
        ts=ts, venue="local", account=account, asset=asset, transfer_id=tid, amount=amount
    )


def exchange_session(
    events: Iterable[Fill | Transfer],
    opening: dict[str, float] | dict[tuple[str, str], float],
    windows: int,
) -> list[Event]:
    """``events`` and the exchange's balance snapshots of every (account, asset) of
    ``opening`` (keys ``asset`` for account ``main``, or ``(account, asset)``) taken 1 ms
    before each window's end, merged in event-time order."""
    bal: dict[tuple[str, str], float] = {
        (k if isinstance(k, tuple) else ("main", k)): v for k, v in opening.items()
    }
    timeline = sorted(events, key=lambda e: e.ts)
    out: list[Event] = [snap(T0 - NS, a, v, acc) for (acc, a), v in sorted(bal.items())]
    i = 0
    for k in range(windows):
        snap_ts = T0 + (k + 1) * W - 1_000_000
        while i < len(timeline) and timeline[i].ts <= snap_ts:
            ev = timeline[i]
            out.append(ev)
            if isinstance(ev, Fill):
                base, quote = ev.symbol.split("/")
                sign = 1 if ev.side == "buy" else -1
                bal[(ev.account, base)] += sign * ev.qty
                bal[(ev.account, quote)] -= sign * ev.price * ev.qty
                if ev.fee:
                    bal[(ev.account, ev.fee_asset)] -= ev.fee
            else:
                bal[(ev.account, ev.asset)] += ev.amount
            i += 1
        out.extend(snap(snap_ts, a, v, acc) for (acc, a), v in sorted(bal.items()))
    out.extend(timeline[i:])
    return out


def random_session(windows: int, fills_per_window: int, seed: int = 7) -> list[Event]:
    """A seeded multi-account, multi-market session with fees in base, quote and BNB and a
    few deposits and withdrawals: many keys, so two workers split them."""
    rng = random.Random(seed)
    accounts = ("main", "alt", "hedge")
    opening = {
        (acc, a): v
        for acc in accounts
        for a, v in (("BTC", 5.0), ("ETH", 50.0), ("USDT", 500_000.0), ("BNB", 10.0))
    }
    events: list[Fill | Transfer] = []
    n = 0
    for k in range(windows):
        for _ in range(fills_per_window):
            n += 1
            ts = T0 + k * W + rng.randrange(1, 59_000) * 1_000_000
            symbol, px = rng.choice((("BTC/USDT", 30_000.0), ("ETH/USDT", 2_000.0)))
            price = round(px * (1 + rng.uniform(-0.01, 0.01)), 2)
            qty = round(rng.uniform(0.001, 0.05), 5)
            base = symbol.split("/")[0]
            fee_asset = rng.choice((base, "USDT", "BNB"))
            fee = round({"USDT": price * qty * 0.001, "BNB": 0.0001}.get(fee_asset, qty * 0.001), 8)
            side = rng.choice(("buy", "sell"))
            events.append(
                fill(
                    f"x{n}",
                    ts,
                    side,
                    price,
                    qty,
                    fee,
                    fee_asset,
                    symbol=symbol,
                    account=rng.choice(accounts),
                )
            )
        if k % 3 == 1:
            acc = rng.choice(accounts)
            events.append(
                deposit(T0 + k * W + 30 * NS, "USDT", rng.choice((1_000.0, -500.0)), f"tr{k}", acc)
            )
    return exchange_session(events, opening, windows)


def reports(out: Iterable[object]) -> list[ReconReport]:
    return [o for o in out if isinstance(o, ReconReport)]


def latest(out: Iterable[object]) -> dict[tuple[str, int], ReconReport]:
    """The newest version of each (asset, window) report (one account)."""
    best: dict[tuple[str, int], ReconReport] = {}
    for r in reports(out):
        k = (r.asset, r.window_start)
        if k not in best or r.version > best[k].version:
            best[k] = r
    return best


def ordered(rs: Sequence[ReconReport]) -> list[ReconReport]:
    """Reports in a canonical order (workers interleave keys differently)."""
    return sorted(rs, key=lambda r: (r.account, r.asset, r.window_start, r.version))


FILLS = [
    fill("t1", T0 + 10 * NS, "buy", 30_000.0, 0.5, 0.0005, "BTC"),
    fill("t2", T0 + 20 * NS, "sell", 30_100.0, 0.2, 6.02, "USDT"),
    fill("t3", T0 + W + 15 * NS, "buy", 29_900.0, 0.1, 2.99, "USDT"),
    fill("t4", T0 + 2 * W + 30 * NS, "sell", 30_050.5, 0.25, 0.00025, "BTC"),
]
OPENING = {"BTC": 1.0, "USDT": 50_000.0}
