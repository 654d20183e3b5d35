"""Mass status: one market's truth at the venue, for the reconciliation sweep."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ccxt.async_support as ccxt

from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent, market_key
from makerflow.venue import balances_from_ccxt, fill_from_ccxt, order_event_from_ccxt

if TYPE_CHECKING:
    from makerflow.sinks.exchange_executor import ExchangeExecutor


@dataclass(frozen=True)
class VenueStatus:
    """One market's truth at the venue: our open orders, our newest trades, and the
    balances of the market's two assets, as listed at ``ts`` (wall clock, ns)."""

    key: str
    ts: int
    open_orders: tuple[OrderEvent, ...]
    fills: tuple[Fill, ...]
    balances: tuple[BalanceSnapshot, ...]


async def fetch_venue_status(ex: ExchangeExecutor, symbol: str) -> VenueStatus:
    """Our open orders, newest trades and the market's balances at the venue. Raises
    ccxt's error when the venue cannot say.

    REST trades carry the venue's order id only: the client id comes from the orders the
    executor has seen, or from one look-up of the order."""
    cfg = ex.config
    client = await ex.client()
    key = market_key(cfg.venue, symbol)
    now = ex.now()
    raw_open = await ex.call(key, client.fetch_open_orders, symbol)
    raw_trades = await ex.call(key, client.fetch_my_trades, symbol, None, cfg.recent_fills_limit)
    balance = await ex.call(key, client.fetch_balance)
    opened = tuple(
        order_event_from_ccxt(
            o, venue=cfg.venue, account=cfg.account, symbol=symbol, fallback_ts=now
        )
        for o in raw_open
    )
    for ev in opened:
        ex.learn(ev)
    fills = []
    for t in raw_trades:
        oid = str(t.get("order")) if t.get("order") is not None else None
        cid = ex.client_id_of(oid) if oid is not None else None
        if oid is not None and cid is None:
            with contextlib.suppress(ccxt.BaseError):
                ev = order_event_from_ccxt(
                    await ex.call(key, client.fetch_order, oid, symbol),
                    venue=cfg.venue,
                    account=cfg.account,
                    symbol=symbol,
                )
                ex.learn(ev)
                cid = ev.client_order_id
        fills.append(fill_from_ccxt(t, venue=cfg.venue, account=cfg.account, client_order_id=cid))
    m = client.market(symbol)
    balances = balances_from_ccxt(
        balance,
        venue=cfg.venue,
        account=cfg.account,
        ts=now,
        assets=frozenset({str(m["base"]), str(m["quote"])}),
    )
    return VenueStatus(key, now, opened, tuple(fills), tuple(balances))
