"""The local exchange's admin endpoints (not part of Binance's API): faults and chaos,
venue-side expiry and stream disconnects on command, moving a paused market, the counters
and the venue's ground truth.

  POST /_admin/faults {"faults": [{kind, count, method, path, after, delay_s, retry_after_s,
       enforce, exec_type, hold, gap_s}], "chaos": {rate, seed, kinds, ...} | null,
       "clear": bool}
  POST /_admin/expire {"clientOrderId" | "orderId", "symbol", "account"}
  POST /_admin/disconnect {"account", "gap_s"}
  POST /_admin/advance?n=N
  GET  /_admin/state                 counters, faults injected per kind
  GET  /_admin/orders, /_admin/trades?account=A
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from makerflow.exchange.engine import EngineError
from makerflow.exchange.faults import ChaosConfig, Fault
from makerflow.exchange.wire import error_response, order_json

if TYPE_CHECKING:
    from makerflow.exchange.server import ExchangeServer


class AdminApi:
    def __init__(self, server: ExchangeServer) -> None:
        self.server = server

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/_admin/faults", self.faults)
        router.add_post("/_admin/expire", self.expire)
        router.add_post("/_admin/disconnect", self.disconnect)
        router.add_post("/_admin/advance", self.advance)
        router.add_get("/_admin/state", self.state)
        router.add_get("/_admin/orders", self.orders)
        router.add_get("/_admin/trades", self.trades)

    async def faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            if body.get("clear"):
                self.server.faults.clear()
            for f in body.get("faults", []):
                self.server.faults.add(Fault(**f))
            if "chaos" in body:
                chaos = body["chaos"]
                if chaos is not None and "kinds" in chaos:
                    chaos = chaos | {"kinds": tuple(chaos["kinds"])}
                self.server.faults.set_chaos(ChaosConfig(**chaos) if chaos is not None else None)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending": self.server.faults.pending()})

    async def expire(self, request: web.Request) -> web.Response:
        body = await request.json()
        oid = body.get("orderId")
        try:
            order = await self.server.expire(
                str(body.get("account", "main")),
                str(body.get("symbol", next(iter(self.server.engine.markets)))),
                int(oid) if oid is not None else None,
                body.get("clientOrderId"),
            )
        except EngineError as exc:
            return error_response(400, exc.code, exc.message)
        return web.json_response(order_json(order))

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.server.user.disconnect(
            str(body.get("account", "main")), float(body.get("gap_s", 1.0))
        )
        return web.json_response({})

    async def advance(self, request: web.Request) -> web.Response:
        n = int(request.query.get("n", "1"))
        return web.json_response({"applied": await self.server.advance(n)})

    async def state(self, _r: web.Request) -> web.Response:
        return web.json_response(self.server.state())

    async def orders(self, request: web.Request) -> web.Response:
        try:
            orders, _ = self.server.ground_truth(request.query.get("account", "main"))
        except EngineError as exc:
            return error_response(400, exc.code, exc.message)
        return web.json_response(orders)

    async def trades(self, request: web.Request) -> web.Response:
        try:
            _, trades = self.server.ground_truth(request.query.get("account", "main"))
        except EngineError as exc:
            return error_response(400, exc.code, exc.message)
        return web.json_response(trades)
