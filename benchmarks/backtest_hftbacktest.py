"""The hftbacktest half of ``benchmarks/backtest.py``: raw Binance recording -> backtest result.

hftbacktest (PyPI ``hftbacktest``, numba + a Rust core) converts the same raw file makerflow
reads (``binancefutures.convert``: the websocket messages and the REST snapshot line) and runs a
market maker comparable to makerflow's quoter: every 100 ms it quotes one post-only bid and ask
of 0.001 BTC around the mid, skewed against the inventory, within a position limit, replacing a
quote whose price changed. Its venue model: constant order-entry and response latencies, the
power-law probabilistic queue model (our order joins behind the visible size and moves up as
trades and cancels happen ahead of it), partial fills, maker/taker fees on traded value.

Times are reported apart: import (numba compiles hftbacktest's jitclasses), convert (raw ->
event array), compile (the first call of the njit strategy, on a short slice) and run (the
whole recording, compiled). ``hftbacktest_result()`` returns the numbers for the combined table;
run this file to print them alone.
"""

# No ``from __future__ import annotations``: benchmarks/backtest.py loads this file with
# importlib without registering it in sys.modules, and dataclasses with string annotations
# look their module up there.
import functools
import gzip
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``../shared/data`` beside the repository (a worktree looks further up), or
    ``$MAKERFLOW_SHARED_DATA``."""
    if "MAKERFLOW_SHARED_DATA" in os.environ:
        return Path(os.environ["MAKERFLOW_SHARED_DATA"])
    for parent in REPO.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return REPO.parent / "shared" / "data"


RAW = shared_data() / "binance" / "usdm" / "btcusdt_20240808.gz"

QUOTE_EVERY_NS = 100_000_000
ORDER_QTY = 0.001
MAX_POSITION = 0.01
HALF_SPREAD_BPS = 1.0
SKEW_BPS_PER_LOT = 0.5
ENTRY_LATENCY_NS = 10_000_000
RESPONSE_LATENCY_NS = 10_000_000
MAKER_FEE = 0.0002
TAKER_FEE = 0.0005
TICK_SIZE = 0.1
LOT_SIZE = 0.001


@dataclass(frozen=True)
class HftbacktestResult:
    name: str
    raw_messages: int
    events: int
    import_s: float
    convert_s: float
    compile_s: float
    run_s: float
    quotes: int
    trades: int
    position: float
    volume: float
    fees: float
    pnl: float

    @property
    def convert_run_s(self) -> float:
        return self.convert_s + self.run_s

    @property
    def messages_per_s(self) -> float:
        return self.raw_messages / self.convert_run_s

    def row(self) -> dict[str, object]:
        return {
            **asdict(self),
            "convert_run_s": self.convert_run_s,
            "messages_per_s": self.messages_per_s,
        }


@functools.cache
def _strategy():
    """The njit strategy (built once, on first use, after hftbacktest's import is timed; numba
    compiles it on its first call)."""
    import numpy as np
    from hftbacktest import BUY, GTX, LIMIT, SELL
    from numba import njit

    @njit
    def quote_every_100ms(hbt, out):
        asset = 0
        depth = hbt.depth(asset)
        tick = depth.tick_size
        quotes = 0
        cancels = 0
        steps = 0
        mid = np.nan
        while hbt.elapse(QUOTE_EVERY_NS) == 0:
            steps += 1
            hbt.clear_inactive_orders(asset)
            depth = hbt.depth(asset)
            if not (depth.best_bid > 0 and depth.best_ask > depth.best_bid):
                continue
            mid = (depth.best_bid + depth.best_ask) / 2.0
            position = hbt.position(asset)
            lots = position / ORDER_QTY
            reservation = mid * (1.0 - SKEW_BPS_PER_LOT * lots / 1e4)
            half = mid * HALF_SPREAD_BPS / 1e4
            # Post-only: never through the touch.
            bid_tick = min(np.floor((reservation - half) / tick), depth.best_bid_tick)
            ask_tick = max(np.ceil((reservation + half) / tick), depth.best_ask_tick)
            want_bid = position < MAX_POSITION - 1e-12
            want_ask = position > -MAX_POSITION + 1e-12
            values = hbt.orders(asset).values()
            while values.has_next():
                order = values.get()
                if order.side == BUY:
                    if order.price_tick == bid_tick and want_bid:
                        want_bid = False
                    elif order.cancellable:
                        hbt.cancel(asset, order.order_id, False)
                        cancels += 1
                elif order.side == SELL:
                    if order.price_tick == ask_tick and want_ask:
                        want_ask = False
                    elif order.cancellable:
                        hbt.cancel(asset, order.order_id, False)
                        cancels += 1
            if want_bid and bid_tick * 2 not in hbt.orders(asset):
                hbt.submit_buy_order(
                    asset, bid_tick * 2, bid_tick * tick, ORDER_QTY, GTX, LIMIT, False
                )
                quotes += 1
            if want_ask and ask_tick * 2 + 1 not in hbt.orders(asset):
                hbt.submit_sell_order(
                    asset, ask_tick * 2 + 1, ask_tick * tick, ORDER_QTY, GTX, LIMIT, False
                )
                quotes += 1
        out[0] = quotes
        out[1] = mid
        out[2] = cancels
        out[3] = steps
        return True

    return quote_every_100ms


def _asset(data):
    from hftbacktest import BacktestAsset

    return (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(ENTRY_LATENCY_NS, RESPONSE_LATENCY_NS)
        .power_prob_queue_model(2.0)
        .partial_fill_exchange()
        .trading_value_fee_model(MAKER_FEE, TAKER_FEE)
        .tick_size(TICK_SIZE)
        .lot_size(LOT_SIZE)
        .last_trades_capacity(0)
    )


def hftbacktest_result(raw: Path = RAW, repeat: int = 3) -> HftbacktestResult:
    """Convert ``raw`` with hftbacktest and run the 100 ms market maker over it, timed.

    Convert and run are repeated ``repeat`` times and the best time counts (the machine is
    shared); the numba compile happens once, on the first call, and is timed apart."""
    import numpy as np

    t = time.perf_counter()
    from hftbacktest import HashMapMarketDepthBacktest
    from hftbacktest.data.utils import binancefutures

    import_s = time.perf_counter() - t

    with gzip.open(raw, "rb") as fh:
        raw_messages = sum(1 for _ in fh)

    convert_s = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        data = binancefutures.convert(str(raw), buffer_size=5_000_000)
        convert_s = min(convert_s, time.perf_counter() - t)

    strategy = _strategy()
    out = np.zeros(4)
    t = time.perf_counter()
    # hftbacktest reads the array in place: keep every array alive while its backtest runs.
    warm_data = data[:20_000].copy()
    warm = HashMapMarketDepthBacktest([_asset(warm_data)])
    strategy(warm, out)  # numba compiles here, on a short slice
    warm.close()
    compile_s = time.perf_counter() - t

    run_s = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        hbt = HashMapMarketDepthBacktest([_asset(data)])
        strategy(hbt, out)
        state = hbt.state_values(0)
        position, balance, fee = state.position, state.balance, state.fee
        trades, volume = state.num_trades, state.trading_volume
        hbt.close()
        run_s = min(run_s, time.perf_counter() - t)

    last_mid = float(out[1])
    logging.getLogger(__name__).info("hftbacktest: %d steps, %d cancels", out[3], out[2])
    return HftbacktestResult(
        name="hftbacktest",
        raw_messages=raw_messages,
        events=len(data),
        import_s=import_s,
        convert_s=convert_s,
        compile_s=compile_s,
        run_s=run_s,
        quotes=int(out[0]),
        trades=int(trades),
        position=float(position),
        volume=float(volume),
        fees=float(fee),
        pnl=float(balance + position * last_mid - fee),
    )


def run_hftbacktest(path: str | Path = RAW) -> list[dict[str, object]]:
    """Rows for the combined table of ``benchmarks/backtest.py`` (``name``, ``seconds``,
    ``events``, ``events_per_s``, ``fills``): hftbacktest's convert + run, its numba compile
    apart, and NautilusTrader's convert + run where it is installed. ``events`` are the raw
    messages of the file, the same count for every row."""
    r = hftbacktest_result(Path(path))
    rows: list[dict[str, object]] = [
        {
            "name": "hftbacktest convert + run",
            "seconds": r.convert_run_s,
            "events": r.raw_messages,
            "events_per_s": r.messages_per_s,
            "fills": r.trades,
            "pnl": r.pnl,
            **{f"hbt_{k}": v for k, v in r.row().items()},
        },
        {
            "name": "hftbacktest numba compile",
            "seconds": r.compile_s,
            "events": r.raw_messages,
            "events_per_s": r.raw_messages / r.compile_s if r.compile_s else float("nan"),
            "fills": "",
        },
    ]
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        from backtest_nautilus import nautilus_result
    except ImportError as exc:  # nautilus_trader not installed: the table says so
        logging.getLogger(__name__).warning("NautilusTrader not benchmarked: %s", exc)
        return rows
    n = nautilus_result(Path(path))
    rows.append(
        {
            "name": "nautilus_trader convert + run",
            "seconds": n.convert_run_s,
            "events": n.raw_messages,
            "events_per_s": n.messages_per_s,
            "fills": n.trades,
            "pnl": n.pnl,
        }
    )
    return rows


def print_result(r: HftbacktestResult) -> None:
    print(f"hftbacktest on {RAW.name}: {r.raw_messages:,} raw messages -> {r.events:,} events")
    print(
        f"  import {r.import_s:6.2f} s   convert {r.convert_s:6.2f} s   "
        f"numba compile {r.compile_s:6.2f} s   run {r.run_s:6.2f} s"
    )
    print(
        f"  convert + run {r.convert_run_s:.2f} s = {r.messages_per_s:,.0f} raw messages/s "
        f"({r.events / r.run_s:,.0f} events/s in the run)"
    )
    print(
        f"  {r.quotes:,} orders placed, {r.trades:,} fills, volume {r.volume:.3f} BTC, "
        f"position {r.position:+.3f}, fees {r.fees:.4f}, PnL {r.pnl:+.4f} USDT"
    )


if __name__ == "__main__":
    if not RAW.exists():
        sys.exit(f"no recording at {RAW}")
    logging.basicConfig(level=logging.WARNING)
    print_result(hftbacktest_result())
    if "--nautilus" in sys.argv:
        from backtest_nautilus import nautilus_result
        from backtest_nautilus import print_result as print_nautilus

        print_nautilus(nautilus_result())
