"""Backtest-live parity, measured: one recording paper-traded live and backtested.

Live: the demo's machinery on the first ``--seconds`` of the demo recording (Binance spot
BTC/USDT tops and trades): the local exchange replays it in real time, the all-in-one flow
trades it through the unmodified ccxt client, the private stream brings acks and fills back.
Backtest: the same tops and trades (as the exchange saw them: one-level book snapshots from
``bookTicker``, the trades) through ``makerflow backtest`` with the simulated venue set up
like the local exchange (no queue: ``front``; its fees and balances) and the latencies
measured on the live run (entry: intent -> ack; cancel: intent -> canceled).

Printed: fills on each side, the fraction that match (same side, price and quantity within
``--tolerance-s``), the PnL of each (marked to the last mid, fees valued in quote) and the
difference. What remains different, and why, is in the module's last paragraph and README.

    python benchmarks/backtest_parity.py --seconds 30

Why they still differ: (1) live, the quoter sees the exchange's book *with our own orders in
it* (the venue publishes its depth merged with resting orders), so its mid moves with our
quotes; the replay's book does not hold them; (2) live market data goes through the venue's
websocket publisher and ccxt pro, whose batching shifts when ticks arrive against when the
venue matched; (3) the live index also has the local chain's DEX pool (two venues), the
backtest only Binance, so the index (and the price band around it) is missing there; (4)
latencies live vary from order to order (asyncio, HTTP, the polling/websocket private
stream), the backtest draws them from the measured samples but not in the same sequence;
(5) the exchange charges a buy's fee in the base asset, the simulated venue in the quote.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
from bytewax.testing import run_main  # noqa: E402

from makerflow.backtest.latency import latencies_of_run  # noqa: E402
from makerflow.backtest.run import FileInput, run_backtest  # noqa: E402
from makerflow.backtest.settings import BacktestConfig  # noqa: E402
from makerflow.backtest.venue import VenueConfig  # noqa: E402
from makerflow.chain.local import LocalChain, deploy_demo  # noqa: E402
from makerflow.demo import runner  # noqa: E402
from makerflow.exchange.local import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange  # noqa: E402
from makerflow.exchange.market_data import BookTop, PublicTrade, replay_file  # noqa: E402
from makerflow.schemas.codec import encode  # noqa: E402
from makerflow.schemas.events import (  # noqa: E402
    BookSnapshot,
    Fill,
    Tick,
    Trade,
)
from makerflow.sinks.jsonl import read_jsonl  # noqa: E402
from makerflow.sources.bounded import RunLatch  # noqa: E402

NS_PER_MS = 1_000_000


def slice_recording(src: Path, dst: Path, seconds: float) -> None:
    """The first ``seconds`` (receive time) of a raw recording."""
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as out:
        first = None
        for line in f:
            ts = int(line.split(" ", 1)[0])
            first = ts if first is None else first
            if ts - first > seconds * 1e9:
                break
            out.write(line)


def exchange_view(raw: Path, dst: Path, start_ns: int = 0) -> None:
    """The market the local exchange runs on, as makerflow events: a one-level book per
    ``bookTicker`` and the trades, at the exchange's millisecond clock, from ``start_ns``
    (when the live pipeline saw its first tick: it connects a moment after the venue starts
    replaying, and a backtest that starts earlier warms up and quotes earlier)."""
    with dst.open("wb") as out:
        for i, ev in enumerate(replay_file(raw)):
            ts = ev.time_ms * NS_PER_MS
            if ts < start_ns:
                continue
            if isinstance(ev, BookTop):
                e: Any = BookSnapshot(
                    ts=ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    seq=i,
                    bids=((float(ev.bid), float(ev.bid_qty)),),
                    asks=((float(ev.ask), float(ev.ask_qty)),),
                )
            elif isinstance(ev, PublicTrade):
                e = Trade(
                    ts=ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    trade_id=str(i),
                    price=float(ev.price),
                    qty=float(ev.qty),
                    side="sell" if ev.taker_side == "SELL" else "buy",
                )
            else:
                continue
            out.write(encode(e) + b"\n")


def run_live(raw: Path, out_dir: Path, seconds: float) -> int:
    """The demo's paper trading on ``raw``; returns the time shift (ns) of its clock."""
    os.environ.setdefault("MAKERFLOW_EXCHANGE_API_KEY", DEFAULT_API_KEY)
    os.environ.setdefault("MAKERFLOW_EXCHANGE_SECRET", DEFAULT_SECRET)
    out_dir.mkdir(parents=True, exist_ok=True)
    offset_ms = (time.time_ns() - runner.first_time_ns(raw)) // NS_PER_MS
    market = runner._shifted(replay_file(raw), offset_ms)
    trades = [
        ((ev.time_ms + offset_ms) * NS_PER_MS, float(ev.price))
        for ev in replay_file(raw)
        if isinstance(ev, PublicTrade)
    ]
    chain = LocalChain()
    demo = deploy_demo(chain, btc_usd=trades[0][1])
    latch = RunLatch(grace_s=3.0, max_runtime_s=seconds + 3.0)
    with LocalExchange(market=market, speed=1.0) as exchange, chain.serve() as rpc:
        follower = runner.ChainFollower(demo, trades, time.time_ns())
        follower.start()
        try:
            flow = runner.build_demo_flow(
                exchange.url, demo.source_config(rpc.url, poll_interval_s=0.5), latch, out_dir
            )
            run_main(flow)
        finally:
            follower.stop_event.set()
            follower.join(timeout=10)
    return offset_ms * NS_PER_MS


def pnl(fills: list[Fill], mid: float) -> float:
    cash = pos = 0.0
    for f in fills:
        sign = 1.0 if f.side == "buy" else -1.0
        pos += sign * f.qty
        cash -= sign * f.qty * f.price
        cash -= f.fee * (f.price if f.fee_asset == "BTC" else 1.0)
        if f.fee_asset == "BTC":
            pos -= f.fee
    return cash + pos * mid


def match(
    live: list[tuple[int, str, float, float]],
    bt: list[tuple[int, str, float, float]],
    tolerance_ns: int,
    price_bps: float,
) -> list[tuple[float, float]]:
    """Greedy one-to-one matching: same side and quantity, times within ``tolerance_ns``,
    prices within ``price_bps``. Returns (time difference s, price difference bps) of each
    match."""
    used = [False] * len(bt)
    out = []
    for ts, side, px, qty in live:
        for j, (ts2, side2, px2, qty2) in enumerate(bt):
            if used[j] or side2 != side or abs(qty2 - qty) > 1e-12:
                continue
            dbps = (px2 - px) / px * 1e4
            if abs(ts2 - ts) <= tolerance_ns and abs(dbps) <= price_bps:
                used[j] = True
                out.append(((ts2 - ts) / 1e9, dbps))
                break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--tolerance-s", type=float, default=1.0)
    ap.add_argument("--price-bps", type=float, default=1.0)
    ap.add_argument("--out", help="keep both runs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.out) if args.out else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        raw = base / "slice.gz"
        slice_recording(runner.DATA, raw, args.seconds)
        offset = run_live(raw, base / "live", args.seconds)
        entry, cancel = latencies_of_run(base / "live")
        view = base / "exchange_view.jsonl"
        live_ticks: list[Tick] = read_jsonl(base / "live" / "ticks.jsonl", Tick)
        exchange_view(raw, view, live_ticks[0].ts - offset if live_ticks else 0)
        demo = runner.demo_config("http://unused")
        venue = VenueConfig(
            entry_latency_ms=statistics.median(entry) if entry else 5.0,
            cancel_latency_ms=statistics.median(cancel) if cancel else 5.0,
            entry_latency_samples_ms=tuple(entry),
            cancel_latency_samples_ms=tuple(cancel),
            report_latency_ms=0.0,  # ack times above are the venue's own: intent -> venue
            queue_model="front",
            maker_fee=0.001,
            taker_fee=0.001,
            initial_base=2.0,
            initial_quote=100_000.0,
        )
        cfg = BacktestConfig(
            index=demo.index, quoting=demo.quoting, risk=demo.risk, recon=demo.recon, venue=venue
        )
        run_backtest(FileInput((str(view),)), cfg, base / "backtest")
        live_fills: list[Fill] = read_jsonl(base / "live" / "fills.jsonl", Fill)
        bt_fills: list[Fill] = read_jsonl(base / "backtest" / "fills.jsonl", Fill)
        ticks: list[Tick] = read_jsonl(base / "backtest" / "ticks.jsonl", Tick)
        mid = ticks[-1].mid if ticks else 0.0
        live_rows = [(f.ts - offset, f.side, f.price, f.qty) for f in live_fills]
        bt_rows = [(f.ts, f.side, f.price, f.qty) for f in bt_fills]
        pairs = match(live_rows, bt_rows, int(args.tolerance_s * 1e9), args.price_bps)
        matched = len(pairs)
        live_pnl, bt_pnl = pnl(live_fills, mid), pnl(bt_fills, mid)
        print(f"parity on {args.seconds:g} s of {runner.DATA.name}")
        print(
            f"  live latencies (ms): entry median {statistics.median(entry) if entry else 0:.1f}"
            f" over {len(entry)}, cancel median {statistics.median(cancel) if cancel else 0:.1f}"
            f" over {len(cancel)}"
        )
        print(
            f"  fills: live {len(live_fills)}, backtest {len(bt_fills)}, matched {matched}"
            f" (side and qty, within {args.tolerance_s:g} s and {args.price_bps:g} bps)"
        )
        for dt, dbps in pairs:
            print(f"    matched fill: backtest {dt:+.3f} s, {dbps:+.3f} bps from live")
        if live_fills:
            print(f"  matched / live fills     {matched / len(live_fills):.1%}")
        if bt_fills:
            print(f"  matched / backtest fills {matched / len(bt_fills):.1%}")
        print(
            f"  PnL (marked at {mid:.2f}): live {live_pnl:.4f}, backtest {bt_pnl:.4f},"
            f" difference {bt_pnl - live_pnl:+.4f} USDT"
        )
        summary = {
            "live_fills": len(live_fills),
            "backtest_fills": len(bt_fills),
            "matched": matched,
            "live_pnl": live_pnl,
            "backtest_pnl": bt_pnl,
        }
        print(msgspec.json.encode(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
