"""What the venue holds and what the pipeline believes, side by side, after a demo run.

* ``exchange_orders.jsonl``: every order the exchange accepted from us (client id, exchange
  id, side, price, quantity, final status and filled quantity, times);
* ``exchange_trades.jsonl``: every trade of ours (trade id, client id, side, price, quantity,
  fee and fee asset);
* ``exchange_balances.json``: the account's balances when the run started and ended;
* ``exchange_state.json``: the exchange's counters, with the faults injected per kind;
* ``state.json``: the pipeline's final view, computed from its own output streams (intents,
  execution verdicts, private order events, fills, balances) through the one order manager
  (:class:`~makerflow.operators.order_state.OrderState`): open orders by client id,
  inventory per asset, position per market.

The conversions are pure functions; the two writers at the bottom do the file I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from makerflow.exchange.engine import Balance, Execution, MarketSpec, Order
from makerflow.operators.order_state import OrderState
from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent, OrderIntent, market_key
from makerflow.sinks.jsonl import read_jsonl


def _market(spec: MarketSpec) -> str:
    return f"{spec.base}/{spec.quote}"


def exchange_order_record(order: Order, spec: MarketSpec) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "exchange_order_id": str(order.order_id),
        "symbol": _market(spec),
        "side": order.side.lower(),
        "type": order.type.lower(),
        "price": float(order.price) if order.type != "MARKET" else None,
        "qty": float(order.orig_qty),
        "status": order.status.lower(),
        "filled_qty": float(order.executed_qty),
        "created_ms": order.time,
        "updated_ms": order.update_time,
    }


def exchange_trade_record(trade: Execution, spec: MarketSpec) -> dict[str, Any]:
    return {
        "trade_id": str(trade.trade_id),
        "client_order_id": trade.client_order_id,
        "exchange_order_id": str(trade.order_id),
        "symbol": _market(spec),
        "side": trade.side.lower(),
        "price": float(trade.price),
        "qty": float(trade.qty),
        "fee": float(trade.commission),
        "fee_asset": trade.commission_asset,
        "liquidity": "maker" if trade.is_maker else "taker",
        "time_ms": trade.time,
    }


def balance_totals(balances: Mapping[str, Balance]) -> dict[str, float]:
    return {a: float(b.free + b.locked) for a, b in sorted(balances.items())}


def _split(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote


def pipeline_view(
    intents: Iterable[OrderIntent],
    executions: Iterable[OrderEvent],
    order_events: Iterable[OrderEvent],
    fills: Iterable[Fill],
    balances: Iterable[BalanceSnapshot],
    *,
    prefix: str = "mf-",
) -> dict[str, Any]:
    """The pipeline's final view from its own streams (in any order: the order manager makes
    the order of arrival irrelevant). Inventory = the first balance the private stream
    reported per asset + every fill counted once, net of its fee."""
    state = OrderState(prefix=prefix)
    for intent in intents:
        state.on_intent(intent)
    for ev in (*executions, *order_events):
        state.on_order_event(ev)
    change: dict[str, Decimal] = {}
    position: dict[str, Decimal] = {}
    applied = duplicates = 0
    for fill in fills:
        if state.on_fill(fill) is None:
            duplicates += 1
            continue
        applied += 1
        base, quote = _split(fill.symbol)
        qty, notional = Decimal(str(fill.qty)), Decimal(str(fill.qty)) * Decimal(str(fill.price))
        sign = 1 if fill.side == "buy" else -1
        change[base] = change.get(base, Decimal(0)) + sign * qty
        change[quote] = change.get(quote, Decimal(0)) - sign * notional
        if fill.fee and fill.fee_asset:
            change[fill.fee_asset] = change.get(fill.fee_asset, Decimal(0)) - Decimal(str(fill.fee))
        key = market_key(fill.venue, fill.symbol)
        position[key] = position.get(key, Decimal(0)) + sign * qty
    start: dict[str, float] = {}
    for snap in sorted(balances, key=lambda b: b.ts):
        start.setdefault(snap.asset, snap.total)
    assets = sorted(set(start) | set(change))
    return {
        "open_orders": {
            o.client_order_id: {
                "symbol": o.symbol,
                "side": o.side,
                "price": o.price,
                "qty": o.qty,
                "filled": o.filled,
                "state": o.state,
                "exchange_order_id": o.exchange_order_id,
            }
            for o in state.open_orders()
        },
        "inventory": {a: start.get(a, 0.0) + float(change.get(a, 0)) for a in assets},
        "inventory_start": {a: start[a] for a in sorted(start)},
        "inventory_change": {a: float(change.get(a, 0)) for a in assets},
        "position": {k: float(v) for k, v in sorted(position.items())},
        "fills_applied": applied,
        "fills_duplicated": duplicates,
        "order_state_conflicts": state.conflicts,
    }


# --- files --------------------------------------------------------------------------------


def _read(out_dir: Path, name: str, value_type: Any) -> list[Any]:
    path = out_dir / f"{name}.jsonl"
    return read_jsonl(path, value_type) if path.exists() else []


def write_pipeline_state(out_dir: Path, *, prefix: str = "mf-") -> dict[str, Any]:
    """``state.json`` from the streams a run wrote to ``out_dir``; returns it."""
    view = pipeline_view(
        _read(out_dir, "intents", OrderIntent),
        _read(out_dir, "executions", OrderEvent),
        _read(out_dir, "order_events", OrderEvent),
        _read(out_dir, "fills", Fill),
        _read(out_dir, "balances", BalanceSnapshot),
        prefix=prefix,
    )
    (out_dir / "state.json").write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")
    return view


def write_exchange_truth(
    out_dir: Path,
    orders: Iterable[tuple[Order, MarketSpec]],
    trades: Iterable[tuple[Execution, MarketSpec]],
    balances_start: Mapping[str, float],
    balances_end: Mapping[str, float],
    exchange_state: Mapping[str, Any],
) -> None:
    """The exchange's ground truth files (see the module docstring)."""
    with (out_dir / "exchange_orders.jsonl").open("w") as f:
        for order, spec in orders:
            f.write(json.dumps(exchange_order_record(order, spec)) + "\n")
    with (out_dir / "exchange_trades.jsonl").open("w") as f:
        for trade, spec in trades:
            f.write(json.dumps(exchange_trade_record(trade, spec)) + "\n")
    (out_dir / "exchange_balances.json").write_text(
        json.dumps({"start": dict(balances_start), "end": dict(balances_end)}, indent=2) + "\n"
    )
    (out_dir / "exchange_state.json").write_text(
        json.dumps(dict(exchange_state), indent=2, sort_keys=True, default=str) + "\n"
    )


def read_exchange_truth(out_dir: Path) -> dict[str, Any]:
    """The ground truth files back (tests, reports)."""

    def lines(name: str) -> list[dict[str, Any]]:
        path = out_dir / name
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    return {
        "orders": lines("exchange_orders.jsonl"),
        "trades": lines("exchange_trades.jsonl"),
        "balances": json.loads((out_dir / "exchange_balances.json").read_text()),
        "state": json.loads((out_dir / "exchange_state.json").read_text()),
    }


def compare_with_venue(
    truth: Mapping[str, Any], view: Mapping[str, Any], fill_trade_ids: Iterable[str]
) -> dict[str, Any]:
    """How the pipeline's view stands against the venue's truth (a pure function): client ids
    the venue accepted more than once, venue trades missing from ``fills`` or delivered more
    than once, open orders only one side believes in, and assets whose inventory change
    differs from the balance change."""
    placed: dict[str, int] = {}
    for o in truth["orders"]:
        placed[o["client_order_id"]] = placed.get(o["client_order_id"], 0) + 1
    seen: dict[str, int] = {}
    for tid in fill_trade_ids:
        seen[tid] = seen.get(tid, 0) + 1
    venue_trades = {t["trade_id"] for t in truth["trades"]}
    venue_open = {
        o["client_order_id"] for o in truth["orders"] if o["status"] in ("new", "partially_filled")
    }
    believed_open = set(view["open_orders"])
    start, end = truth["balances"]["start"], truth["balances"]["end"]
    inventory_off = {}
    for asset in sorted(set(end) | set(view["inventory_change"])):
        venue_change = end.get(asset, 0.0) - start.get(asset, 0.0)
        ours = view["inventory_change"].get(asset, 0.0)
        if abs(venue_change - ours) > 1e-6 + 1e-9 * abs(venue_change):
            inventory_off[asset] = {"pipeline": ours, "venue": venue_change}
    return {
        "client_ids_placed_twice": sorted(c for c, n in placed.items() if n > 1),
        "trades_missing_from_fills": sorted(venue_trades - set(seen)),
        "fills_not_on_venue": sorted(set(seen) - venue_trades),
        "fills_delivered_twice": sorted(t for t, n in seen.items() if n > 1),
        "open_on_venue_only": sorted(venue_open - believed_open),
        "open_in_pipeline_only": sorted(believed_open - venue_open),
        "inventory_off": inventory_off,
    }
