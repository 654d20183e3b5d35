"""The local exchange's HTTP and websocket layer: enough of Binance spot's REST API (v3), its
market streams and its WebSocket API (user data stream by signature subscription) for the
unmodified ccxt client (``ccxt.async_support.binance`` and ``ccxt.pro.binance``).

Served:
  REST  GET  /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/depth
        GET  /api/v3/account, /api/v3/order, /api/v3/openOrders, /api/v3/allOrders,
             /api/v3/myTrades                                            (signed)
        POST /api/v3/order; DELETE /api/v3/order, /api/v3/openOrders      (signed)
  WS    /ws-api/v3: userDataStream.subscribe.signature -> executionReport and
        outboundAccountPosition events (ccxt.pro watch_orders, watch_my_trades,
        watch_balance); /stream and /ws: <sym>@depth[@100ms] (diffs with U/u, synced with
        the REST depth's lastUpdateId), <sym>@trade, <sym>@bookTicker (watch_order_book,
        watch_trades, watch_bids_asks).
  Admin POST /_admin/faults {"faults": [{kind, count, method, path, after, delay_s}],
        "clear": bool}; POST /_admin/advance?n=N; GET /_admin/state.

Requests are authenticated as Binance does: ``X-MBX-APIKEY`` names the key, and ``signature``
is the HMAC-SHA256, with the key's secret, of the query string and body as sent (minus the
signature itself); ``timestamp`` must fall inside ``recvWindow`` of the server's wall clock.
Wrong keys or signatures get Binance's error codes, which ccxt maps to AuthenticationError.

All engine access happens on this server's event loop, so the engine needs no lock. The
public market (replay or random walk) is driven by a task that sleeps between events in
proportion to their event-time gaps (``speed``), or only on :meth:`ExchangeServer.advance`
when ``speed`` is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from makerflow.exchange.engine import (
    INSUFFICIENT_BALANCE,
    ZERO,
    EngineError,
    Execution,
    MarketSpec,
    MatchingEngine,
    Order,
    OrderUpdate,
    Outcome,
)
from makerflow.exchange.faults import Fault, FaultPlan, TokenBucket
from makerflow.exchange.market_data import BookTop, MarketEvent, PublicTrade

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SIGNATURE = re.compile(r"(^|&)signature=[^&]*")


@dataclass(frozen=True)
class ApiKey:
    """A key pair and the account it trades. ``repr`` hides the secret."""

    key: str
    secret: str = field(repr=False)
    account: str


def _s(d: Decimal, places: int = 8) -> str:
    return f"{d:.{places}f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ExchangeServer:
    """Engine + public market + fault plan + Binance-shaped REST and WebSocket API."""

    def __init__(
        self,
        engine: MatchingEngine,
        keys: list[ApiKey],
        market: Iterator[MarketEvent] | None = None,
        *,
        speed: float = 1.0,
        check_timestamp: bool = True,
        order_rate_limit: tuple[float, float] | None = None,
    ) -> None:
        """``order_rate_limit``: (orders per second, burst) per API key for order placement
        and cancellation; beyond it the venue answers 429, as Binance does."""
        self.engine = engine
        self._order_rate_limit = order_rate_limit
        self._buckets: dict[str, TokenBucket] = {}
        self.keys = {k.key: k for k in keys}
        self.faults = FaultPlan()
        self.speed = speed
        self.check_timestamp = check_timestamp
        self._market = market
        # account -> subscribed websockets -> their subscription id
        self._sockets: dict[str, dict[web.WebSocketResponse, int]] = {}
        self._subscription_ids = itertools.count(0)
        # Public streams: subscribers per stream name, the last published depth and top of
        # book per symbol, and the depth sequence (``lastUpdateId``, ``U``/``u``).
        self._streams: dict[str, set[web.WebSocketResponse]] = {}
        self._published_depth: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self._depth_seq: dict[str, int] = {}
        self._tops: dict[str, Any] = {}
        self._public_trade_ids = itertools.count(1)
        self._driver: asyncio.Task[None] | None = None
        self.requests = 0
        self.market_events = 0

    # --- lifecycle --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        r = app.router
        r.add_get("/api/v3/ping", self._ping)
        r.add_get("/api/v3/time", self._time)
        r.add_get("/api/v3/exchangeInfo", self._exchange_info)
        r.add_get("/api/v3/depth", self._depth)
        r.add_get("/api/v3/account", self._signed(self._account))
        r.add_post("/api/v3/order", self._signed(self._new_order))
        r.add_get("/api/v3/order", self._signed(self._get_order))
        r.add_delete("/api/v3/order", self._signed(self._cancel_order))
        r.add_get("/api/v3/openOrders", self._signed(self._open_orders))
        r.add_delete("/api/v3/openOrders", self._signed(self._cancel_all))
        r.add_get("/api/v3/allOrders", self._signed(self._all_orders))
        r.add_get("/api/v3/myTrades", self._signed(self._my_trades))
        r.add_get("/ws-api/v3", self._ws_api)
        for prefix in ("/ws", "/stream"):
            r.add_get(prefix, self._ws_streams)
            r.add_get(prefix + "/{tail}", self._ws_streams)
        r.add_post("/_admin/faults", self._admin_faults)
        r.add_post("/_admin/advance", self._admin_advance)
        r.add_get("/_admin/state", self._admin_state)
        app.on_startup.append(self._start_driver)
        app.on_shutdown.append(self._stop)
        return app

    async def _start_driver(self, _app: web.Application) -> None:
        if self._market is not None and self.speed > 0:
            self._driver = asyncio.create_task(self._drive())

    async def _stop(self, _app: web.Application) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
        for sockets in self._sockets.values():
            for ws in list(sockets):
                await ws.close()
        for subscribers in self._streams.values():
            for ws in list(subscribers):
                await ws.close()

    # --- the public market ------------------------------------------------------------

    async def _drive(self) -> None:
        assert self._market is not None
        last_ms: int | None = None
        for ev in self._market:
            if last_ms is not None and ev.time_ms > last_ms:
                await asyncio.sleep((ev.time_ms - last_ms) / 1000.0 / self.speed)
            last_ms = ev.time_ms
            await self.apply_market_event(ev)
        log.info("the public market ended after %d events", self.market_events)

    async def apply_market_event(self, ev: MarketEvent) -> None:
        """Feed one public event to the engine and publish what it filled."""
        self.engine.set_time(ev.time_ms)
        self.market_events += 1
        if isinstance(ev, BookTop):
            out = self.engine.on_book_top(ev.symbol, ev.bid, ev.bid_qty, ev.ask, ev.ask_qty)
            await self._publish(out, ev.symbol)
        else:
            out = self.engine.on_public_trade(ev.symbol, ev.price, ev.qty, ev.taker_side)
            await self._publish(out, ev.symbol, ev)

    async def advance(self, n: int = 1) -> int:
        """Apply the next ``n`` public events at once (tests, ``speed=0``); returns how many."""
        if self._market is None:
            return 0
        done = 0
        for ev in itertools.islice(self._market, n):
            await self.apply_market_event(ev)
            done += 1
        return done

    # --- middleware: faults -----------------------------------------------------------

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        if request.path.startswith("/_admin"):
            return await handler(request)
        fault = self.faults.take(request.method, request.path)
        if fault is None and self._over_order_limit(request):
            return _error(
                429,
                -1015,
                "Too many new orders; current limit is "
                f"{self._order_rate_limit[0] if self._order_rate_limit else 0:g} "
                "orders per SECOND.",
            )
        if fault is None:
            return await self._guarded(request, handler)
        log.info("injecting %s into %s %s", fault.kind, request.method, request.path)
        if fault.after:
            await self._guarded(request, handler)
        return await self._fault_response(fault)

    def _over_order_limit(self, request: web.Request) -> bool:
        if self._order_rate_limit is None or request.method not in ("POST", "DELETE"):
            return False
        if request.path not in ("/api/v3/order", "/api/v3/openOrders"):
            return False
        key = request.headers.get("X-MBX-APIKEY", "")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(*self._order_rate_limit)
        # Request rates are a wall-clock matter at the edge; the engine never sees them.
        return not bucket.take(time.monotonic())

    @property
    def rate_limited(self) -> int:
        """How many requests the venue's own order rate limit refused."""
        return sum(b.refused for b in self._buckets.values())

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except EngineError as exc:
            return _error(400, exc.code, exc.message)

    async def _fault_response(self, fault: Fault) -> web.StreamResponse:
        if fault.kind == "rate_limit":
            resp = _error(
                429, -1003, "Too many requests; current limit is 6000 request weight per 1 MINUTE."
            )
            resp.headers["Retry-After"] = "1"
            return resp
        if fault.kind == "server_error":
            return web.Response(status=500, text="Internal Server Error")
        if fault.kind == "unavailable":
            return web.Response(status=503, text="Service Unavailable")
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            return web.Response(status=504, text="Gateway Timeout")
        return _error(400, -2010, INSUFFICIENT_BALANCE)

    # --- auth -------------------------------------------------------------------------

    def _signed(
        self, handler: Callable[[web.Request, ApiKey, dict[str, str]], Awaitable[Any]]
    ) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            key = self._authenticate(
                request.headers.get("X-MBX-APIKEY"), request.query_string, body
            )
            params = dict(parse_qsl(request.query_string, keep_blank_values=True))
            params.update(parse_qsl(body, keep_blank_values=True))
            result = await handler(request, key, params)
            return web.json_response(result)

        return wrapped

    def _authenticate(self, api_key: str | None, query: str, body: str) -> ApiKey:
        if not api_key:
            raise ApiError(401, -2014, "API-key format invalid.")
        key = self.keys.get(api_key)
        if key is None:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        signature = params.get("signature")
        if not signature:
            raise ApiError(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        payload = _SIGNATURE.sub("", query).lstrip("&") + _SIGNATURE.sub("", body).lstrip("&")
        self._verify(key, payload, signature, params)
        return key

    def _verify(self, key: ApiKey, payload: str, signature: str, params: dict[str, str]) -> None:
        expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        if not self.check_timestamp:
            return
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise ApiError(
                400,
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ) from None
        # The signature's freshness is a wall-clock matter at the edge, as on the real venue;
        # the engine itself only knows market event time.
        now = int(time.time() * 1000)
        if ts >= now + 1000 or now - ts > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

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
                "symbols": [_symbol_info(m) for m in self.engine.markets.values()],
            }
        )

    async def _depth(self, request: web.Request) -> web.Response:
        try:
            symbol = request.query["symbol"]
            limit = int(request.query.get("limit", "100"))
            _, bids, asks = self.engine.depth(symbol, limit)
            update_id = self._depth_seq.get(symbol, 0)
        except KeyError:
            return _error(400, -1102, "Mandatory parameter 'symbol' was not sent.")
        except EngineError as exc:
            return _error(400, exc.code, exc.message)
        return web.json_response(
            {
                "lastUpdateId": update_id,
                "bids": [[_s(p), _s(q)] for p, q in bids],
                "asks": [[_s(p), _s(q)] for p, q in asks],
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
                {"asset": a, "free": _s(b.free), "locked": _s(b.locked)}
                for a, b in sorted(balances.items())
                if not (omit_zero and b.free == 0 and b.locked == 0)
            ],
            "permissions": ["SPOT"],
            "uid": zlib.crc32(key.account.encode()),
        }

    async def _new_order(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        symbol = _need(p, "symbol")
        side = _need(p, "side").upper()
        order_type = _need(p, "type").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'side'.")
        if order_type not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = _decimal(p, "quantity")
        price = _decimal(p, "price") if "price" in p else None
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
        resp = _order_json(order) | {"transactTime": order.time}
        resp["fills"] = [
            {
                "price": _s(u.execution.price),
                "qty": _s(u.execution.qty),
                "commission": _s(u.execution.commission),
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
        return _order_json(self.engine.get_order(key.account, _need(p, "symbol"), oid, cid))

    async def _cancel_order(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        oid, cid = self._ids(p)
        order, out = self.engine.cancel(key.account, _need(p, "symbol"), oid, cid)
        await self._publish(out, order.symbol)
        return _cancel_json(order)

    async def _open_orders(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        return [_order_json(o) for o in self.engine.open_orders(key.account, p.get("symbol"))]

    async def _cancel_all(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        symbol = _need(p, "symbol")
        orders, out = self.engine.cancel_all(key.account, symbol)
        await self._publish(out, symbol)
        return [_cancel_json(o) for o in orders]

    async def _all_orders(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        orders = self.engine.all_orders(key.account, _need(p, "symbol"))
        orders = [o for o in orders if _in_window(o.time, p)]
        limit = int(p.get("limit", "500"))
        return [_order_json(o) for o in orders[-limit:]]

    async def _my_trades(self, _r: web.Request, key: ApiKey, p: dict[str, str]) -> Any:
        trades = self.engine.my_trades(key.account, _need(p, "symbol"))
        from_id = int(p.get("fromId", "0"))
        trades = [t for t in trades if t.trade_id >= from_id and _in_window(t.time, p)]
        if "orderId" in p:
            trades = [t for t in trades if t.order_id == int(p["orderId"])]
        limit = int(p.get("limit", "500"))
        trades = trades[:limit] if from_id else trades[-limit:]
        return [_trade_json(t) for t in trades]

    # --- websocket API: the user data stream ------------------------------------------

    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        accounts: set[str] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await ws.send_json(
                        {
                            "id": None,
                            "status": 400,
                            "error": {"code": -1100, "msg": "Malformed JSON."},
                        }
                    )
                    continue
                await ws.send_json(self._ws_request(ws, req, accounts))
        finally:
            for account in accounts:
                self._sockets.get(account, {}).pop(ws, None)
        return ws

    def _ws_request(
        self, ws: web.WebSocketResponse, req: dict[str, Any], accounts: set[str]
    ) -> dict[str, Any]:
        rid = req.get("id")
        method = req.get("method")
        params: dict[str, Any] = req.get("params") or {}
        if method == "ping":
            return {"id": rid, "status": 200, "result": {}}
        if method != "userDataStream.subscribe.signature":
            return {
                "id": rid,
                "status": 400,
                "error": {"code": -1100, "msg": f"Unknown method {method!r}."},
            }
        try:
            key = self.keys.get(str(params.get("apiKey", "")))
            if key is None:
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            signature = str(params.get("signature", ""))
            fields = {k: str(v) for k, v in params.items() if k != "signature"}
            # WebSocket API requests sign their params sorted by name, unencoded.
            payload = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
            self._verify(key, payload, signature, fields)
        except ApiError as exc:
            return {
                "id": rid,
                "status": exc.status,
                "error": {"code": exc.code, "msg": exc.message},
            }
        accounts.add(key.account)
        sub_id = next(self._subscription_ids)
        self._sockets.setdefault(key.account, {})[ws] = sub_id
        return {
            "id": rid,
            "status": 200,
            "result": {"subscriptionId": sub_id},
        }

    async def _publish(
        self, out: Outcome, symbol: str, public_trade: PublicTrade | None = None
    ) -> None:
        """Tell the private and public streams what a change did. Every message is built
        before the first send (no await in between), so sequence numbers and balances
        describe exactly the state the change left."""
        private = [(u.order.account, _execution_report(u)) for u in out.updates]
        private += [(a, self._account_position(a)) for a in sorted(out.accounts)]
        public = self._market_messages(symbol, out, public_trade)
        for account, event in private:
            await self._send(account, event)
        for stream, msg in public:
            await self._send_public(stream, msg)

    def _account_position(self, account: str) -> dict[str, Any]:
        return {
            "e": "outboundAccountPosition",
            "E": self.engine.time_ms,
            "u": self.engine.time_ms,
            "B": [
                {"a": a, "f": _s(b.free), "l": _s(b.locked)}
                for a, b in sorted(self.engine.balances(account).items())
            ],
        }

    def _market_messages(
        self, symbol: str, out: Outcome, public_trade: PublicTrade | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Public stream messages after a change: trades, the depth diff, the top of book."""
        low = symbol.lower()
        t = self.engine.time_ms
        msgs: list[tuple[str, dict[str, Any]]] = []
        trades = (
            [(public_trade.price, public_trade.qty, public_trade.taker_side)]
            if (public_trade is not None)
            else []
        )
        trades += [
            (u.execution.price, u.execution.qty, u.order.side)
            for u in out.updates
            if u.execution is not None and not u.execution.is_maker
        ]
        for price, qty, taker_side in trades:
            msgs.append(
                (
                    f"{low}@trade",
                    {
                        "e": "trade",
                        "E": t,
                        "s": symbol,
                        "t": next(self._public_trade_ids),
                        "p": _s(price),
                        "q": _s(qty),
                        "T": t,
                        # "m": the buyer is the maker, i.e. the taker sold.
                        "m": taker_side == "SELL",
                        "M": True,
                    },
                )
            )
        # Only the levels the change touched are compared with what was published, so a
        # change costs the same however deep the book is.
        published = self._published_depth.setdefault(symbol, ({}, {}))
        diffs: tuple[list[list[str]], list[list[str]]] = ([], [])
        for price in sorted(self.engine.drain_touched(symbol)):
            for side, qty in enumerate(self.engine.level(symbol, price)):
                if published[side].get(price, ZERO) != qty:
                    diffs[side].append([_s(price), _s(qty)])
                    if qty:
                        published[side][price] = qty
                    else:
                        published[side].pop(price, None)
        if diffs[0] or diffs[1]:
            seq = self._depth_seq[symbol] = self._depth_seq.get(symbol, 0) + 1
            update = {
                "e": "depthUpdate",
                "E": t,
                "s": symbol,
                "U": seq,
                "u": seq,
                "b": diffs[0],
                "a": diffs[1],
            }
            msgs.append((f"{low}@depth", update))
            msgs.append((f"{low}@depth@100ms", update))
            bid, ask = self.engine.top(symbol)
            if bid is not None and ask is not None and (bid, ask) != self._tops.get(symbol):
                self._tops[symbol] = (bid, ask)
                msgs.append(
                    (
                        f"{low}@bookTicker",
                        {
                            "u": seq,
                            "s": symbol,
                            "b": _s(bid[0]),
                            "B": _s(bid[1]),
                            "a": _s(ask[0]),
                            "A": _s(ask[1]),
                        },
                    )
                )
        return msgs

    async def _send_public(self, stream: str, msg: dict[str, Any]) -> None:
        for ws in list(self._streams.get(stream, ())):
            try:
                await ws.send_json(msg)
            except (ConnectionError, RuntimeError):
                self._streams[stream].discard(ws)

    # --- websocket market streams -----------------------------------------------------

    async def _ws_streams(self, request: web.Request) -> web.WebSocketResponse:
        """Binance's market streams: ``/ws/<stream>`` subscribes at once; ``/ws`` and
        ``/ws/<n>`` take ``{"method": "SUBSCRIBE", "params": [...], "id": n}``."""
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        mine: set[str] = set()
        tail = request.match_info.get("tail", "")
        if "@" in tail:
            mine.add(tail)
            self._streams.setdefault(tail, set()).add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                    method = req["method"]
                    params = [str(x) for x in req.get("params") or []]
                except (ValueError, KeyError, TypeError):
                    await ws.send_json({"error": {"code": 2, "msg": "Invalid request"}})
                    continue
                if method == "SUBSCRIBE":
                    for stream in params:
                        mine.add(stream)
                        self._streams.setdefault(stream, set()).add(ws)
                elif method == "UNSUBSCRIBE":
                    for stream in params:
                        mine.discard(stream)
                        self._streams.get(stream, set()).discard(ws)
                elif method != "LIST_SUBSCRIPTIONS":
                    await ws.send_json(
                        {
                            "error": {"code": 1, "msg": f"Unknown method {method}"},
                            "id": req.get("id"),
                        }
                    )
                    continue
                result = sorted(mine) if method == "LIST_SUBSCRIPTIONS" else None
                await ws.send_json({"result": result, "id": req.get("id")})
        finally:
            for stream in mine:
                self._streams.get(stream, set()).discard(ws)
        return ws

    async def _send(self, account: str, event: dict[str, Any]) -> None:
        for ws, sub_id in list(self._sockets.get(account, {}).items()):
            try:
                await ws.send_json({"subscriptionId": sub_id, "event": event})
            except (ConnectionError, RuntimeError):
                self._sockets[account].pop(ws, None)

    # --- admin ------------------------------------------------------------------------

    async def _admin_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.faults.clear()
        for f in body.get("faults", []):
            self.faults.add(Fault(**f))
        return web.json_response({"pending": self.faults.pending()})

    async def _admin_advance(self, request: web.Request) -> web.Response:
        n = int(request.query.get("n", "1"))
        return web.json_response({"applied": await self.advance(n)})

    async def _admin_state(self, _r: web.Request) -> web.Response:
        return web.json_response(
            {
                "time_ms": self.engine.time_ms,
                "requests": self.requests,
                "market_events": self.market_events,
                "faults_pending": self.faults.pending(),
                "faults_injected": self.faults.injected,
                "rate_limited": self.rate_limited,
            }
        )


# --- wire formats (Binance spot v3) ---------------------------------------------------


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def _need(p: dict[str, str], name: str) -> str:
    v = p.get(name)
    if not v:
        raise ApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return v


def _decimal(p: dict[str, str], name: str) -> Decimal:
    try:
        return Decimal(_need(p, name))
    except InvalidOperation:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _in_window(t: int, p: dict[str, str]) -> bool:
    start = int(p.get("startTime", "0"))
    end = int(p.get("endTime", str(2**62)))
    return start <= t <= end


def _symbol_info(m: MarketSpec) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "quoteOrderQtyMarketAllowed": False,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _s(m.min_price),
                "maxPrice": _s(m.max_price),
                "tickSize": _s(m.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _s(m.min_qty),
                "maxQty": _s(m.max_qty),
                "stepSize": _s(m.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _s(m.min_notional),
                "applyMinToMarket": False,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def _order_json(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": _s(o.price),
        "origQty": _s(o.orig_qty),
        "executedQty": _s(o.executed_qty),
        "cummulativeQuoteQty": _s(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": True,
        "workingTime": o.time,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "NONE",
    }


def _cancel_json(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": f"cancel-{o.order_id}",
        "transactTime": o.update_time,
        "price": _s(o.price),
        "origQty": _s(o.orig_qty),
        "executedQty": _s(o.executed_qty),
        "cummulativeQuoteQty": _s(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "selfTradePreventionMode": "NONE",
    }


def _trade_json(t: Execution) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "id": t.trade_id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": _s(t.price),
        "qty": _s(t.qty),
        "quoteQty": _s(t.quote_qty),
        "commission": _s(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time,
        "isBuyer": t.side == "BUY",
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


def _execution_report(u: OrderUpdate) -> dict[str, Any]:
    o, ex = u.order, u.execution
    canceled = u.exec_type == "CANCELED"
    return {
        "e": "executionReport",
        "E": u.time,
        "s": o.symbol,
        # On a cancel Binance puts the cancel request's id in "c" and the order's in "C".
        "c": f"cancel-{o.order_id}" if canceled else o.client_order_id,
        "S": o.side,
        "o": o.type,
        "f": o.time_in_force,
        "q": _s(o.orig_qty),
        "p": _s(o.price),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": o.client_order_id if canceled else "",
        "x": u.exec_type,
        "X": o.status,
        "r": u.reject_reason,
        "i": o.order_id,
        "l": _s(ex.qty) if ex else "0.00000000",
        "z": _s(o.executed_qty),
        "L": _s(ex.price) if ex else "0.00000000",
        "n": _s(ex.commission) if ex else "0",
        "N": ex.commission_asset if ex else None,
        "T": u.time,
        "t": ex.trade_id if ex else -1,
        "v": 0,
        "I": u.time,
        "w": o.is_open,
        "m": ex.is_maker if ex else False,
        "M": False,
        "O": o.time,
        "Z": _s(o.cum_quote),
        "Y": _s(ex.quote_qty) if ex else "0.00000000",
        "Q": "0.00000000",
        "W": o.time,
        "V": "NONE",
    }
