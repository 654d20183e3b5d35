"""The Binance-shaped REST endpoints of the local exchange (public and signed), and how a
change they or the market make is told to the private and public streams. Served by
:class:`~makerflow.exchange.server.ExchangeServer`, which sets every attribute declared here."""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

from aiohttp import web

from makerflow.exchange.engine import EngineError, MatchingEngine, Outcome
from makerflow.exchange.market_data import PublicTrade
from makerflow.exchange.public_streams import PublicStreams
from makerflow.exchange.user_stream import UserDataStream
from makerflow.exchange.wire import (
    ApiError,
    ApiKey,
    cancel_json,
    decimal_param,
    error_response,
    execution_report,
    fmt,
    in_window,
    need,
    order_json,
    symbol_info,
    trade_json,
)

log = logging.getLogger(__name__)


class RestApi:
    """The endpoints' half of :class:`~makerflow.exchange.server.ExchangeServer`."""

    engine: MatchingEngine
    public: PublicStreams
    user: UserDataStream
    requests: int

    # --- publishing -------------------------------------------------------------------

    async def _publish(
        self, out: Outcome, symbol: str, public_trade: PublicTrade | None = None
    ) -> None:
        """Tell the private and public streams what a change did. Every message is built
        before the first send (no await in between), so sequence numbers and balances
        describe exactly the state the change left."""
        private = [(u.order.account, execution_report(u)) for u in out.updates]
        private += [(a, self._account_position(a)) for a in sorted(out.accounts)]
        public = self.public.messages(symbol, out, public_trade)
        for account, event in private:
            await self.user.publish(account, event)
        for stream, msg in public:
            await self.public.send(stream, msg)

    async def publish_any(self, out: Outcome) -> None:
        """Publish an outcome that may span several markets."""
        symbols = sorted({u.order.symbol for u in out.updates})
        for i, symbol in enumerate(symbols):
            updates = tuple(u for u in out.updates if u.order.symbol == symbol)
            accounts = out.accounts if i == len(symbols) - 1 else frozenset()
            await self._publish(Outcome(updates, accounts), symbol)

    def _account_position(self, account: str) -> dict[str, Any]:
        return {
            "e": "outboundAccountPosition",
            "E": self.engine.time_ms,
            "u": self.engine.time_ms,
            "B": [
                {"a": a, "f": fmt(b.free), "l": fmt(b.locked)}
                for a, b in sorted(self.engine.balances(account).items())
            ],
        }

    # --- public endpoints -------------------------------------------------------------

    async def _ping(self, _r: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, _r: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, _r: web.Request) -> web.Response:
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": 10,
                        "limit": 100,
                    },
                ],
                "exchangeFilters": [],
                "symbols": [symbol_info(m) for m in self.engine.markets.values()],
            }
        )

    async def _depth(self, request: web.Request) -> web.Response:
        try:
            symbol = request.query["symbol"]
            limit = int(request.query.get("limit", "100"))
            _, bids, asks = self.engine.depth(symbol, limit)
            update_id = self.public.depth_seq(symbol)
        except KeyError:
            return error_response(400, -1102, "Mandatory parameter 'symbol' was not sent.")
        except EngineError as exc:
            return error_response(400, exc.code, exc.message)
        return web.json_response(
            {
                "lastUpdateId": update_id,
                "bids": [[fmt(p), fmt(q)] for p, q in bids],
                "asks": [[fmt(p), fmt(q)] for p, q in asks],
            }
        )

    # --- private endpoints ------------------------------------------------------------

    async def _account(self, _r: web.Request, key: ApiKey, params: dict[str, str]) -> Any:
        balances = self.engine.balances(key.account)
        omit_zero = params.get("omitZeroBalances") == "true"
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": self.engine.time_ms,
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": fmt(b.free), "locked": fmt(b.locked)}
                for a, b in sorted(balances.items())
                if not (omit_zero and b.free == 0 and b.locked == 0)
            ],
            "permissions": ["SPOT"],
            "uid": zlib.crc32(key.account.encode()),
        }

    async def _new_order(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        symbol = need(p, "symbol")
        side = need(p, "side").upper()
        order_type = need(p, "type").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'side'.")
        if order_type not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = decimal_param(p, "quantity")
        price = decimal_param(p, "price") if "price" in p else None
        cid = p.get("newClientOrderId") or f"local-{self.requests}"
        order, out = self.engine.place(
            key.account,
            symbol,
            side,  # type: ignore[arg-type]
            order_type,  # type: ignore[arg-type]
            qty,
            price,
            client_order_id=cid,
            time_in_force=p.get("timeInForce", "GTC"),
        )
        await self._publish(out, symbol)
        resp = order_json(order) | {"transactTime": order.time}
        resp["fills"] = [
            {
                "price": fmt(u.execution.price),
                "qty": fmt(u.execution.qty),
                "commission": fmt(u.execution.commission),
                "commissionAsset": u.execution.commission_asset,
                "tradeId": u.execution.trade_id,
            }
            for u in out.updates
            if u.execution is not None and u.order.order_id == order.order_id
        ]
        return resp

    def _ids(self, p: dict[str, str]) -> tuple[int | None, str | None]:
        order_id = p.get("orderId")
        cid = p.get("origClientOrderId")
        if order_id is None and cid is None:
            raise ApiError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        try:
            return (int(order_id) if order_id is not None else None), cid
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'orderId'.") from None

    async def _get_order(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        oid, cid = self._ids(p)
        return order_json(self.engine.get_order(key.account, need(p, "symbol"), oid, cid))

    async def _cancel_order(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        oid, cid = self._ids(p)
        order, out = self.engine.cancel(key.account, need(p, "symbol"), oid, cid)
        await self._publish(out, order.symbol)
        return cancel_json(order)

    async def _open_orders(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        return [order_json(o) for o in self.engine.open_orders(key.account, p.get("symbol"))]

    async def _cancel_all(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        symbol = need(p, "symbol")
        orders, out = self.engine.cancel_all(key.account, symbol)
        await self._publish(out, symbol)
        return [cancel_json(o) for o in orders]

    async def _all_orders(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        orders = self.engine.all_orders(key.account, need(p, "symbol"))
        orders = [o for o in orders if in_window(o.time, p)]
        limit = int(p.get("limit", "500"))
        return [order_json(o) for o in orders[-limit:]]

    async def _my_trades(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        trades = self.engine.my_trades(key.account, need(p, "symbol"))
        from_id = int(p.get("fromId", "0"))
        trades = [t for t in trades if t.trade_id >= from_id and in_window(t.time, p)]
        if "orderId" in p:
            trades = [t for t in trades if t.order_id == int(p["orderId"])]
        limit = int(p.get("limit", "500"))
        trades = trades[:limit] if from_id else trades[-limit:]
        return [trade_json(t) for t in trades]
