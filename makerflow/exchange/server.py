"""The local exchange's HTTP layer: enough of Binance spot's REST API (v3), its market streams
and its WebSocket API (user data stream by signature subscription) for the unmodified ccxt
client (``ccxt.async_support.binance`` and ``ccxt.pro.binance``).

Served:
  REST  GET  /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo, /api/v3/depth
        GET  /api/v3/account, /api/v3/order, /api/v3/openOrders, /api/v3/allOrders,
             /api/v3/myTrades                                            (signed)
        POST /api/v3/order; DELETE /api/v3/order, /api/v3/openOrders      (signed)
  WS    /ws-api/v3: userDataStream.subscribe.signature -> executionReport and
        outboundAccountPosition events (:mod:`.user_stream`); /stream and /ws: market
        streams (:mod:`.public_streams`).
  Admin /_admin/...: faults and chaos, expiry, disconnects, counters, ground truth
        (:mod:`.admin`).

Requests are authenticated as Binance does: ``X-MBX-APIKEY`` names the key, and ``signature``
is the HMAC-SHA256, with the key's secret, of the query string and body as sent (minus the
signature itself); ``timestamp`` must fall inside ``recvWindow`` of the server's wall clock
when the request is processed. Wrong keys or signatures get Binance's error codes, which ccxt
maps to AuthenticationError.

All engine access happens on this server's event loop, so the engine needs no lock. The
public market (replay or random walk) is driven by a task that sleeps between events in
proportion to their event-time gaps (``speed``), or only on :meth:`ExchangeServer.advance`
when ``speed`` is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from makerflow.exchange.admin import AdminApi
from makerflow.exchange.engine import EngineError, MatchingEngine, Order
from makerflow.exchange.fault_edge import FaultEdge, Handler
from makerflow.exchange.faults import FaultPlan
from makerflow.exchange.market_data import BookTop, MarketEvent
from makerflow.exchange.public_streams import PublicStreams
from makerflow.exchange.rest_api import RestApi
from makerflow.exchange.user_stream import UserDataStream
from makerflow.exchange.wire import (
    ApiError,
    ApiKey,
    check_signature,
    check_timestamp,
    error_response,
    order_json,
    trade_json,
    unsigned_payload,
)

log = logging.getLogger(__name__)

__all__ = ["ApiError", "ApiKey", "ExchangeServer"]


class ExchangeServer(RestApi):
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
        faults: FaultPlan | None = None,
        order_lifetime_ms: int | None = None,
    ) -> None:
        """``order_rate_limit``: (orders per second, burst) per API key for order placement
        and cancellation; beyond it the venue answers 429, as Binance does. ``faults``: the
        plan to start with (e.g. :meth:`FaultPlan.chaos`). ``order_lifetime_ms``: the venue
        expires an open order once it has rested this long (engine time)."""
        self.engine = engine
        self.keys = {k.key: k for k in keys}
        self.faults = faults or FaultPlan()
        self.speed = speed
        self.check_timestamp = check_timestamp
        self.order_lifetime_ms = order_lifetime_ms
        self._market = market
        self.public = PublicStreams(engine)
        self.user = UserDataStream(self.keys, lambda: self.faults, check_time=check_timestamp)
        self.edge = FaultEdge(
            lambda: self.faults, self.keys, order_rate_limit, self._guarded, self._expire_later
        )
        self._driver: asyncio.Task[None] | None = None
        self._expiries: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.requests_by_order: Counter[tuple[str, str, str]] = Counter()
        """API requests per (method, path, client id): how often a client asked about one
        order (``("DELETE", "/api/v3/order", cid)`` counts its cancel requests)."""
        self.in_flight: Counter[str] = Counter()
        """API requests being served now, per symbol (``""`` for requests without one)."""
        self.max_in_flight: Counter[str] = Counter()
        """The most requests served at once, per symbol, since the start."""
        self.max_in_flight_total = 0
        """The most requests served at once, all symbols."""
        self.market_events = 0
        self.expired_by_venue = 0

    # --- lifecycle --------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
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
        r.add_get("/ws-api/v3", self.user.handle)
        for prefix in ("/ws", "/stream"):
            r.add_get(prefix, self.public.handle)
            r.add_get(prefix + "/{tail}", self.public.handle)
        AdminApi(self).add_routes(r)
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
        for handle in self._expiries:
            handle.cancel()
        await self.edge.close()
        await self.user.close()
        await self.public.close()

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
        if self.order_lifetime_ms is not None:
            expired = self.engine.expire_older_than(self.order_lifetime_ms)
            self.expired_by_venue += len(expired.updates)
            await self.publish_any(expired)
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

    # --- venue-side expiry ------------------------------------------------------------

    async def expire(
        self, account: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order:
        """The venue expires one open order on its own (status EXPIRED, an executionReport)."""
        order, out = self.engine.expire(account, symbol, order_id, client_order_id)
        self.expired_by_venue += 1
        await self._publish(out, symbol)
        return order

    def _expire_later(self, account: str, symbol: str, order_id: int, delay_s: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._expiries.discard(handle)
            task = loop.create_task(self._expire_if_open(account, symbol, order_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(delay_s, fire)
        self._expiries.add(handle)

    async def _expire_if_open(self, account: str, symbol: str, order_id: int) -> None:
        with contextlib.suppress(EngineError):
            await self.expire(account, symbol, order_id, None)

    # --- middleware: request faults and errors ----------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        if request.path.startswith("/_admin"):
            return await handler(request)
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if request.can_read_body:  # aiohttp keeps the body: the handler reads it again
            params.update(parse_qsl(await request.text(), keep_blank_values=True))
        cid = params.get("origClientOrderId") or params.get("newClientOrderId") or ""
        self.requests_by_order[(request.method, request.path, cid)] += 1
        symbol = params.get("symbol", "")
        self.in_flight[symbol] += 1
        self.max_in_flight[symbol] = max(self.max_in_flight[symbol], self.in_flight[symbol])
        self.max_in_flight_total = max(self.max_in_flight_total, self.in_flight.total())
        try:
            return await self.edge.serve(request, handler)
        finally:
            self.in_flight[symbol] -= 1

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except EngineError as exc:
            return error_response(400, exc.code, exc.message)

    @property
    def _sockets(self) -> dict[str, dict[web.WebSocketResponse, int]]:
        # Older tests close the user data sockets by hand; :meth:`UserDataStream.disconnect`
        # (``LocalExchange.disconnect``) is the way to do it now.
        return self.user._sockets

    @property
    def rate_limited(self) -> int:
        """How many requests the venue's own order rate limit refused."""
        return self.edge.rate_limited

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
        check_signature(key, unsigned_payload(query, body), signature)
        if self.check_timestamp:
            # The signature's freshness is a wall-clock matter at the edge, as on the real
            # venue; the engine itself only knows market event time.
            check_timestamp(params, int(time.time() * 1000))
        return key

    # --- the venue's own view (admin) ------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Counters: requests, market events, faults pending and injected (total and per
        kind), the chaos mix, events lost in stream gaps, orders the venue expired."""
        chaos = self.faults.chaos_config
        return {
            "time_ms": self.engine.time_ms,
            "requests": self.requests,
            "market_events": self.market_events,
            "faults_pending": self.faults.pending(),
            "faults_injected": self.faults.injected,
            "faults_by_kind": dict(sorted(self.faults.injected_by_kind.items())),
            "chaos": asdict(chaos) if chaos is not None else None,
            "rate_limited": self.rate_limited,
            "refused_during_retry_after": dict(self.edge.refused_in_window),
            "private_events_missed": sum(self.user.missed.values()),
            "expired_by_venue": self.expired_by_venue,
        }

    def ground_truth(self, account: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every order the venue accepted from ``account`` and every trade of it, as the
        venue's own JSON (``allOrders`` / ``myTrades`` rows, with the trade's client id)."""
        orders = [
            order_json(o)
            for symbol in sorted(self.engine.markets)
            for o in self.engine.all_orders(account, symbol)
        ]
        trades = []
        for symbol in sorted(self.engine.markets):
            for t in self.engine.my_trades(account, symbol):
                trades.append(trade_json(t) | {"clientOrderId": t.client_order_id})
        return orders, trades
