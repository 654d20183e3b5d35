"""ccxt's unified orders, trades and balances as makerflow events (parsed once, here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from makerflow.operators.recon_orders import ExchangeOrder
from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent, OrderStatus, Side

_STATUS: dict[str, OrderStatus] = {
    "closed": "filled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "rejected": "rejected",
    "expired": "expired",
}


def order_event_from_ccxt(
    order: Mapping[str, Any],
    *,
    venue: str,
    account: str,
    symbol: str | None = None,
    fallback_ts: int = 0,
    client_order_id: str | None = None,
    reason: str = "",
) -> OrderEvent:
    """A ccxt unified order as an :class:`OrderEvent` (``open`` with fills is ``partial``)."""
    filled = float(order.get("filled") or 0.0)
    raw_status = order.get("status") or "open"
    status: OrderStatus = _STATUS.get(raw_status, "ack" if filled == 0 else "partial")
    stamp = order.get("lastUpdateTimestamp") or order.get("timestamp")
    side: Side = "sell" if str(order.get("side") or "").lower() == "sell" else "buy"
    price = order.get("price")
    return OrderEvent(
        ts=int(stamp) * 1_000_000 if stamp else fallback_ts,
        venue=venue,
        symbol=symbol or str(order.get("symbol")),
        account=account,
        client_order_id=client_order_id or str(order.get("clientOrderId") or ""),
        exchange_order_id=str(order["id"]) if order.get("id") is not None else None,
        status=status,
        side=side,
        price=float(price) if price else None,
        qty=float(order.get("amount") or 0.0),
        filled_qty=filled,
        reason=reason,
    )


def exchange_order_from_ccxt(order: Mapping[str, Any]) -> ExchangeOrder:
    """One open order as the venue lists it, for open-order reconciliation: the translation
    of :func:`order_event_from_ccxt`, strict (``ValueError`` without an id, a symbol, a buy
    or sell side or an amount: a listing says what is resting, nothing may be guessed) and
    stamped with the order's creation time (the in-flight grace counts from it)."""
    side = str(order.get("side") or "").lower()
    missing = [k for k in ("id", "symbol", "amount") if order.get(k) is None]
    try:
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        if side not in ("buy", "sell"):
            raise ValueError(f"side {side!r}")
        ev = order_event_from_ccxt(order, venue="", account="")
        created = int(order.get("timestamp") or 0) * 1_000_000
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a ccxt open order ({exc}): {dict(order)!r}") from None
    return ExchangeOrder(
        symbol=ev.symbol,
        side=ev.side,
        exchange_order_id=ev.exchange_order_id or "",
        client_order_id=ev.client_order_id or None,
        price=ev.price,
        qty=ev.qty,
        filled=ev.filled_qty,
        ts=created,
    )


def fill_from_ccxt(
    trade: Mapping[str, Any],
    *,
    venue: str,
    account: str,
    client_order_id: str | None = None,
) -> Fill:
    """A ccxt unified trade of ours as a :class:`Fill`."""
    fee = trade.get("fee") or {}
    info = trade.get("info") or {}
    cid = client_order_id or info.get("c") or None
    side: Side = "sell" if trade.get("side") == "sell" else "buy"
    return Fill(
        ts=int(trade.get("timestamp") or 0) * 1_000_000,
        venue=venue,
        symbol=str(trade.get("symbol")),
        account=account,
        trade_id=str(trade.get("id")),
        client_order_id=cid,
        exchange_order_id=str(trade["order"]) if trade.get("order") is not None else None,
        side=side,
        price=float(trade.get("price") or 0.0),
        qty=float(trade.get("amount") or 0.0),
        fee=float(fee.get("cost") or 0.0),
        fee_asset=str(fee.get("currency") or ""),
        liquidity="taker" if trade.get("takerOrMaker") == "taker" else "maker",
    )


def balances_from_ccxt(
    balance: Mapping[str, Any],
    *,
    venue: str,
    account: str,
    ts: int,
    assets: frozenset[str] | None = None,
) -> list[BalanceSnapshot]:
    """One :class:`BalanceSnapshot` per asset of a ccxt balance structure (of ``assets``
    only, when given)."""
    free = balance.get("free") or {}
    used = balance.get("used") or {}
    total = balance.get("total") or {}
    stamp = balance.get("timestamp")
    out = []
    for asset in sorted(total):
        if assets is not None and asset not in assets:
            continue
        out.append(
            BalanceSnapshot(
                ts=int(stamp) * 1_000_000 if stamp else ts,
                venue=venue,
                account=account,
                asset=asset,
                free=float(free.get(asset) or 0.0),
                used=float(used.get(asset) or 0.0),
                total=float(total.get(asset) or 0.0),
            )
        )
    return out
