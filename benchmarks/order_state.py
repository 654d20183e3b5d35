"""The order manager's events/s on a recorded order flow, against the paths it replaced.

    .venv/bin/python benchmarks/order_state.py [--quick] [--levels N] [--repeat R]

The order flow is made by the quoter itself: it quotes real Binance spot BTC/USDT bookTicker
updates (``../shared/data``, or ``--data DIR``: 73 174 ticks; ``--quick``, or without the
data, the 4 000 of ``tests/fixtures/quoting``), and a small matching model answers each
intent the way the venue does: an ack for each place, a cancel confirmation for each cancel,
and, when the touch moves through a resting order, a fill of half of what is left (or all
of it) with its partial or filled order update. What was said, in order, is the flow: the
quoter's intents, the venue's order events and fills.

Rows (each row's work applied to the whole flow, best of ``--repeat`` runs in this process):
- ``plain dict``: ``d[cid] = (status, filled)`` per order event, a seen-set per fill; the floor.
- ``main: LiveOrder + OpenOrders``: what main did for the same flow, the quoter's
  ``LiveOrder`` records (msgspec replace per ack, partial and fill, a 512-id fill memory) plus
  the exchange sink's ``OpenOrders`` set (main's makerflow.operators.guards, restated here so
  the baseline outlives it).
- ``OrderState, in order``: :class:`makerflow.operators.order_state.OrderState`.
- ``OrderState, at-least-once``: the same flow delivered as a venue does: 10 % of the venue's
  events twice, each venue event delayed by up to 8 positions (seeded), so order updates and
  fills come in either order. The final state is checked equal to the in-order run's.
Columns: events in the flow, best wall time, events per second, ratio to the plain dict.
Compare rows of one run, not runs: the wall clock measures whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from makerflow.operators.market_ticks import book_tick
from makerflow.operators.order_state import OrderState
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting_config import MarketConfig, QuotingParams
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent, Side, Tick

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FULL = ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
QUICK = (REPO / "tests" / "fixtures" / "quoting" / "btcusdt_bookticker_20240808.gz",)
MS = 1_000_000
MARKET = MarketConfig(
    venue="binance",
    symbol="BTC/USDT",
    tick_size=0.01,
    lot_size=0.00001,
    min_qty=0.00001,
    min_notional=5.0,
)

Item = OrderIntent | OrderEvent | Fill


def load_ticks(paths: tuple[Path, ...]) -> list[Tick]:
    out: list[Tick] = []
    for path in paths:
        with gzip.open(path, "rt") as f:
            for line in f:
                if "@bookTicker" not in line:
                    continue
                recv, raw = line.split(" ", 1)
                d = json.loads(raw)["data"]
                bid, ask = float(d["b"]), float(d["a"])
                out.append(
                    book_tick(
                        "binance", "BTC/USDT", int(recv), bid, float(d["B"]), ask, float(d["A"])
                    )
                )
    return out


class _Resting(msgspec.Struct):
    side: Side
    price: float
    qty: float
    filled: float = 0.0


def record_flow(ticks: list[Tick], levels: int) -> list[Item]:
    """Quote ``ticks`` and answer the quoter as a venue would; every intent, order event and
    fill, in the order they were said."""
    # A tight fixed spread, so the recorded market trades through our quotes now and then.
    params = QuotingParams(
        model="fixed_spread",
        half_spread_bps=0.2,
        levels=levels,
        warmup_s=0.0,
        min_quote_lifetime_s=0.2,
        max_position=0.01,
    )
    q = Quoter(MARKET, params, cancel_on_start=False)
    resting: dict[str, _Resting] = {}
    flow: list[Item] = []
    trade = 0

    def event(ts: int, cid: str, o: _Resting, status: str) -> OrderEvent:
        return OrderEvent(
            ts=ts,
            venue=MARKET.venue,
            symbol=MARKET.symbol,
            client_order_id=cid,
            exchange_order_id=f"x{cid}",
            status=status,  # type: ignore[arg-type]
            side=o.side,
            price=o.price,
            qty=o.qty,
            filled_qty=o.filled,
        )

    def feed(items: list[Item]) -> None:
        pending = list(items)
        while pending:
            item = pending.pop(0)
            flow.append(item)
            if isinstance(item, OrderIntent):
                pending.extend(answer(item))
            else:
                out = q.on_event(item)
                pending.extend(out.intents)

    def answer(i: OrderIntent) -> list[Item]:
        cid = i.client_order_id or ""
        ts = i.ts + MS
        if i.action == "place" and i.side and i.price and i.qty:
            o = _Resting(i.side, i.price, i.qty)
            resting[cid] = o
            return [event(ts, cid, o, "ack")]
        if i.action == "cancel" and cid in resting:
            return [event(ts, cid, resting.pop(cid), "canceled")]
        return []

    for t in ticks:
        feed(list(q.on_tick(t).intents))
        for cid, o in list(resting.items()):
            # the touch moved through our price: the resting order was (partly) taken
            crossed = t.bid < o.price if o.side == "buy" else t.ask > o.price
            if not crossed:
                continue
            left = o.qty - o.filled
            qty = left if left < 2 * MARKET.lot_size else round(left / 2, 5)
            o.filled = round(o.filled + qty, 8)
            trade += 1
            fill = Fill(
                ts=t.ts + MS,
                venue=MARKET.venue,
                symbol=MARKET.symbol,
                trade_id=str(trade),
                client_order_id=cid,
                side=o.side,
                price=o.price,
                qty=qty,
            )
            done = o.filled >= o.qty - MARKET.lot_size / 2
            if done:
                del resting[cid]
            feed([fill, event(t.ts + MS, cid, o, "filled" if done else "partial")])
    return flow


def at_least_once(flow: list[Item], seed: int = 7) -> list[Item]:
    """The venue's events duplicated (10 %) and delayed by up to 8 positions; the quoter's
    own intents stay where they were made."""
    rng = random.Random(seed)
    keyed: list[tuple[float, int, Item]] = []
    for n, item in enumerate(flow):
        if isinstance(item, OrderIntent):
            keyed.append((n, n, item))
            continue
        keyed.append((n + rng.random() * 8, n, item))
        if rng.random() < 0.1:
            keyed.append((n + rng.random() * 8, n, item))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [item for _, _, item in keyed]


# --- the paths measured ---------------------------------------------------------------------


def plain_dict(flow: list[Item]) -> Any:
    d: dict[str, tuple[str, float]] = {}
    seen: set[tuple[str, str]] = set()
    for item in flow:
        if isinstance(item, OrderEvent):
            d[item.client_order_id] = (item.status, item.filled_qty)
        elif isinstance(item, Fill):
            key = (item.venue, item.trade_id)
            if key not in seen:
                seen.add(key)
                cid = item.client_order_id or ""
                status, filled = d.get(cid, ("new", 0.0))
                d[cid] = (status, filled + item.qty)
        elif item.action == "place" and item.client_order_id:
            d[item.client_order_id] = ("new", 0.0)
    return d


class _Live(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    side: Side
    price: float
    qty: float
    filled: float = 0.0
    acked: bool = False
    cancel_ts: int | None = None


_DONE = frozenset({"filled", "canceled", "rejected", "expired"})


class OpenOrders:
    """Main's ``guards.OpenOrders``: the sink's set of open client ids."""

    def __init__(self) -> None:
        self._open: set[str] = set()

    def on_event(self, ev: OrderEvent) -> None:
        if ev.status in _DONE:
            self._open.discard(ev.client_order_id)
        else:
            self._open.add(ev.client_order_id)


def main_path(flow: list[Item]) -> Any:
    """Main's order handling for the same flow: the quoter's LiveOrders and the sink's
    OpenOrders (two partial views, both kept)."""
    orders: dict[str, _Live] = {}
    fill_ids: deque[str] = deque(maxlen=512)
    fill_set: set[str] = set()
    sink = OpenOrders()
    half_lot = MARKET.lot_size / 2
    for item in flow:
        if isinstance(item, OrderIntent):
            cid = item.client_order_id or ""
            if item.action == "place" and item.side and item.price and item.qty:
                orders[cid] = _Live(
                    client_order_id=cid, side=item.side, price=item.price, qty=item.qty
                )
            elif item.action == "cancel" and cid in orders:
                orders[cid] = msgspec.structs.replace(orders[cid], cancel_ts=item.ts)
        elif isinstance(item, OrderEvent):
            sink.on_event(item)
            o = orders.get(item.client_order_id)
            if o is None:
                continue
            if item.status in _DONE:
                del orders[o.client_order_id]
                continue
            filled = max(o.filled, item.filled_qty)
            if filled >= o.qty - half_lot:
                del orders[o.client_order_id]
            else:
                orders[o.client_order_id] = msgspec.structs.replace(o, acked=True, filled=filled)
        else:
            if item.trade_id in fill_set:
                continue
            if len(fill_ids) == fill_ids.maxlen:
                fill_set.discard(fill_ids[0])
            fill_ids.append(item.trade_id)
            fill_set.add(item.trade_id)
            o = orders.get(item.client_order_id or "")
            if o is not None:
                filled = o.filled + item.qty
                if filled >= o.qty - half_lot:
                    del orders[o.client_order_id]
                else:
                    orders[o.client_order_id] = msgspec.structs.replace(o, filled=filled)
    return orders, sink


def order_state(flow: list[Item]) -> OrderState:
    s = OrderState(prefix="mf-", tolerance=MARKET.lot_size / 2)
    on_intent, on_event, on_fill = s.on_intent, s.on_order_event, s.on_fill
    for item in flow:
        if isinstance(item, OrderIntent):
            on_intent(item)
        elif isinstance(item, OrderEvent):
            on_event(item)
        else:
            on_fill(item)
    return s


def best_of(fn: Callable[[list[Item]], Any], flow: list[Item], repeat: int) -> tuple[float, Any]:
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn(flow)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 4 000 ticks of tests/fixtures")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    full = tuple(args.data / "binance" / "spot" / name for name in FULL)
    paths = QUICK if args.quick or not all(p.exists() for p in full) else full
    ticks = load_ticks(paths)
    flow = record_flow(ticks, args.levels)
    shaken = at_least_once(flow)
    kinds = {k.__name__: sum(isinstance(x, k) for x in flow) for k in (OrderIntent, OrderEvent)}
    kinds["Fill"] = sum(isinstance(x, Fill) for x in flow)
    print(f"{len(ticks)} ticks from {', '.join(p.name for p in paths)}; {args.levels} levels")
    print(f"order flow: {len(flow)} events ({kinds}); at-least-once delivery: {len(shaken)}")

    rows: list[tuple[str, int, float]] = []
    t_dict, _ = best_of(plain_dict, flow, args.repeat)
    rows.append(("plain dict", len(flow), t_dict))
    t_main, _ = best_of(main_path, flow, args.repeat)
    rows.append(("main: LiveOrder + OpenOrders", len(flow), t_main))
    t_state, in_order = best_of(order_state, flow, args.repeat)
    rows.append(("OrderState, in order", len(flow), t_state))
    t_shaken, shaken_state = best_of(order_state, shaken, args.repeat)
    rows.append(("OrderState, at-least-once", len(shaken), t_shaken))
    same = {o.client_order_id: o for o in in_order.snapshot().orders} == {
        o.client_order_id: o for o in shaken_state.snapshot().orders
    }

    print()
    print(f"| {'path':<30} | {'events':>8} | {'best ms':>8} | {'events/s':>11} | {'vs dict':>7} |")
    print(f"|{'-' * 32}|---------:|---------:|------------:|--------:|")
    base = len(flow) / t_dict
    for name, n, t in rows:
        rate = n / t
        print(f"| {name:<30} | {n:>8} | {t * 1e3:>8.1f} | {rate:>11,.0f} | {rate / base:>6.2f}x |")
    print()
    print(f"at-least-once delivery ends in the in-order state: {same}")
    open_now = len(in_order.open_orders())
    print(f"open orders at the end: {open_now}; orders held: {len(in_order)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
