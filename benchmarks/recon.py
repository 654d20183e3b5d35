"""Reconciliation throughput: events/s through the pure logic and the Bytewax operator.

    .venv/bin/python benchmarks/recon.py [--quick]

Rows (each against a baseline measured in the same process on the same events):
- ``logic``: :func:`reconcile_all` (legs, checks, windows, reports) against only splitting
  fills into legs and checking snapshots (the per-event work without any windowing);
- ``logic, 10% late``: the same session with one fill in ten arriving two windows late (each
  amends a reported window) against the in-order session;
- ``operator run_main``: ``reconcile_op`` in a one-worker dataflow against a dataflow that
  only routes the same events through the same input and output (filter + branch).

The session: 3 accounts x (BTC, ETH, USDT, BNB), fills on BTC/USDT and ETH/USDT with fees in
base, quote and BNB, a balance snapshot of every balance at each 60 s window's end, booked the
way the exchange books them, so every window is OK. One process, one thread: one core.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.recon_config import NS, ReconConfig
from makerflow.operators.recon_inputs import check_snapshot, fill_legs
from makerflow.operators.recon_logic import reconcile_all
from makerflow.operators.reconcile import reconcile_op
from makerflow.schemas.events import BalanceSnapshot, Fill, ReconReport, Transfer

W = 60 * NS
T0 = 1_700_000_040 * NS
CFG = ReconConfig(window_s=60, grace_s=5, allowed_lateness_s=600)


def session(windows: int, fills_per_window: int, seed: int = 1) -> list[Any]:
    rng = random.Random(seed)
    accounts = ("main", "alt", "hedge")
    bal = {
        (a, x): v
        for a in accounts
        for x, v in (("BTC", 50.0), ("ETH", 500.0), ("USDT", 5e6), ("BNB", 100.0))
    }
    out: list[Any] = []
    n = 0
    for k in range(windows):
        times = sorted(rng.randrange(1, 59_000) for _ in range(fills_per_window))
        for ms in times:
            n += 1
            acc = rng.choice(accounts)
            symbol, px = rng.choice((("BTC/USDT", 30_000.0), ("ETH/USDT", 2_000.0)))
            base = symbol.split("/")[0]
            price = round(px * (1 + rng.uniform(-0.01, 0.01)), 2)
            qty = round(rng.uniform(0.001, 0.05), 5)
            fee_asset = rng.choice((base, "USDT", "BNB"))
            fee = round({"USDT": price * qty * 0.001, "BNB": 0.0001}.get(fee_asset, qty * 0.001), 8)
            side = rng.choice(("buy", "sell"))
            f = Fill(
                ts=T0 + k * W + ms * 1_000_000,
                venue="bench",
                symbol=symbol,
                account=acc,
                trade_id=f"b{n}",
                side=side,  # type: ignore[arg-type]
                price=price,
                qty=qty,
                fee=fee,
                fee_asset=fee_asset,
            )
            sign = 1 if side == "buy" else -1
            bal[(acc, base)] += sign * qty
            bal[(acc, "USDT")] -= sign * price * qty
            bal[(acc, fee_asset)] -= fee
            out.append(f)
        snap_ts = T0 + (k + 1) * W - 1_000_000
        out.extend(
            BalanceSnapshot(ts=snap_ts, venue="bench", account=a, asset=x, free=v, total=v)
            for (a, x), v in sorted(bal.items())
        )
    return out


def with_late(events: list[Any], every: int = 10) -> list[Any]:
    """One fill in ``every`` moved two windows later in arrival order."""
    late: list[tuple[int, Any]] = []
    kept: list[Any] = []
    for i, e in enumerate(events):
        if isinstance(e, Fill) and i % every == 0:
            late.append((e.ts + 2 * W, e))
        else:
            kept.append(e)
    out: list[Any] = []
    j = 0
    late.sort(key=lambda x: x[0])
    for e in kept:
        while j < len(late) and late[j][0] <= e.ts:
            out.append(late[j][1])
            j += 1
        out.append(e)
    out.extend(e for _, e in late[j:])
    return out


def parse_only(events: list[Any]) -> int:
    n = 0
    for e in events:
        if isinstance(e, Fill):
            n += len(fill_legs(e, CFG))  # type: ignore[arg-type]
        else:
            check_snapshot(e, CFG)
            n += 1
    return n


def reconcile_flow(events: list[Any]) -> int:
    got: list[ReconReport] = []
    flow = Dataflow("bench_recon")
    src = op.input("in", flow, TestingSource(events, batch_size=1000))
    fills = op.filter_map("fills", src, lambda e: e if isinstance(e, Fill) else None)
    snaps = op.filter_map("snaps", src, lambda e: e if isinstance(e, BalanceSnapshot) else None)
    moves = op.filter_map("moves", src, lambda e: e if isinstance(e, Transfer) else None)
    out = reconcile_op("recon", fills, snaps, moves, CFG)
    op.output("out", out.reports, TestingSink(got))
    run_main(flow)
    return len(got)


def passthrough_flow(events: list[Any]) -> int:
    got: list[Any] = []
    flow = Dataflow("bench_pass")
    src = op.input("in", flow, TestingSource(events, batch_size=1000))
    fills = op.filter_map("fills", src, lambda e: e if isinstance(e, Fill) else None)
    snaps = op.filter_map("snaps", src, lambda e: e if isinstance(e, BalanceSnapshot) else None)
    both = op.merge("both", fills, snaps)
    keep = op.branch("keep", both, lambda e: e is not None)
    op.output("out", keep.trues, TestingSink(got))
    run_main(flow)
    return len(got)


def rate(fn: Callable[[list[Any]], Any], events: list[Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn(events)
        best = min(best, time.perf_counter() - t)
    return len(events) / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smaller session, one repeat")
    args = p.parse_args(argv)
    windows, per = (20, 100) if args.quick else (60, 300)
    repeat = 1 if args.quick else 3
    events = session(windows, per)
    late = with_late(events)
    check = reconcile_all(events, CFG)
    assert all(getattr(r, "status", "OK") == "OK" for r in check), "the session must be clean"

    rows = [
        ("logic", rate(lambda e: reconcile_all(e, CFG), events, repeat),
         "legs + checks only", rate(parse_only, events, repeat)),
        ("logic, 10% late", rate(lambda e: reconcile_all(e, CFG), late, repeat),
         "in order", rate(lambda e: reconcile_all(e, CFG), events, repeat)),
        ("operator run_main", rate(reconcile_flow, events, repeat),
         "routing-only flow", rate(passthrough_flow, events, repeat)),
    ]  # fmt: skip
    print(f"{len(events)} events ({windows} windows x {per} fills + snapshots), best of {repeat}")
    print(f"{'case':<20} {'events/s':>12} {'baseline':<20} {'events/s':>12} {'ratio':>7}")
    for name, r, base_name, base in rows:
        print(f"{name:<20} {r:>12,.0f} {base_name:<20} {base:>12,.0f} {r / base:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
