"""The request side of fault injection: how one REST request is answered when the
:class:`~makerflow.exchange.faults.FaultPlan` strikes it, plus the venue's own order rate limit
and the ``Retry-After`` windows of 429/418 bursts.

Faults are wall-clock matters at the edge (a late request, a held answer, a ban), so they live
here; the engine only ever sees requests that were processed, in the order they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from makerflow.exchange.engine import INSUFFICIENT_BALANCE
from makerflow.exchange.faults import Fault, FaultPlan, TokenBucket
from makerflow.exchange.wire import ApiKey, error_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpireLater = Callable[[str, str, int, float], None]
"""(account, symbol, order id, delay s): schedule a venue-side expiry."""


class FaultEdge:
    """Serves one request through the current fault plan."""

    def __init__(
        self,
        faults: Callable[[], FaultPlan],
        keys: Mapping[str, ApiKey],
        order_rate_limit: tuple[float, float] | None,
        guarded: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]],
        expire_later: ExpireLater,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._faults = faults
        self._keys = keys
        self._order_rate_limit = order_rate_limit
        self._guarded = guarded
        self._expire_later = expire_later
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        # API key -> (until, the fault that opened the window)
        self._windows: dict[str, tuple[float, Fault]] = {}
        self._background: set[asyncio.Task[web.StreamResponse]] = set()
        self.refused_in_window: Counter[str] = Counter()
        """Requests refused again because they came before ``Retry-After`` had passed."""

    @property
    def rate_limited(self) -> int:
        """How many requests the venue's own order rate limit refused."""
        return sum(b.refused for b in self._buckets.values())

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task

    async def serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("X-MBX-APIKEY", "")
        refused = self._in_window(key, request)
        if refused is not None:
            return refused
        fault = self._faults().take(request.method, request.path)
        if fault is None:
            if self._over_order_limit(key, request):
                return error_response(
                    429,
                    -1015,
                    "Too many new orders; current limit is "
                    f"{self._order_rate_limit[0] if self._order_rate_limit else 0:g} "
                    "orders per SECOND.",
                )
            return await self._guarded(request, handler)
        log.info("injecting %s into %s %s", fault.label, request.method, request.path)
        if fault.kind == "late":
            return await self._late(request, handler, fault)
        if fault.kind == "expire":
            return await self._placed_then_expired(request, handler, fault, key)
        if fault.kind == "lost":
            await self._guarded(request, handler)
            await asyncio.sleep(fault.delay_s)
            return _drop_connection(request)
        if fault.after:
            await self._guarded(request, handler)
        return await self._fault_response(fault, key)

    # --- kinds ------------------------------------------------------------------------

    async def _late(
        self, request: web.Request, handler: Handler, fault: Fault
    ) -> web.StreamResponse:
        """Processed ``delay_s`` late, whether or not the client still waits: the request
        sits in the venue's queue, then reaches the matching engine (which checks its
        ``recvWindow`` then, as Binance's does)."""
        await request.read()  # the body is ours before the client may hang up

        async def process() -> web.StreamResponse:
            await asyncio.sleep(fault.delay_s)
            return await self._guarded(request, handler)

        task = asyncio.ensure_future(process())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(task)

    async def _placed_then_expired(
        self, request: web.Request, handler: Handler, fault: Fault, key: str
    ) -> web.StreamResponse:
        resp = await self._guarded(request, handler)
        api_key = self._keys.get(key)
        body = getattr(resp, "body", None)
        if resp.status == 200 and api_key is not None and isinstance(body, bytes):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                order: dict[str, Any] = json.loads(body)
                self._expire_later(
                    api_key.account, str(order["symbol"]), int(order["orderId"]), fault.delay_s
                )
        return resp

    async def _fault_response(self, fault: Fault, key: str) -> web.StreamResponse:
        if fault.kind in ("rate_limit", "ban"):
            if fault.enforce:
                self._windows[key] = (self._clock() + fault.retry_after_s, fault)
            return _limited(fault, fault.retry_after_s)
        if fault.kind == "server_error":
            return web.Response(status=500, text="Internal Server Error")
        if fault.kind == "unavailable":
            return web.Response(status=503, text="Service Unavailable")
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
            return web.Response(status=504, text="Gateway Timeout")
        return error_response(400, -2010, INSUFFICIENT_BALANCE)

    # --- limits -----------------------------------------------------------------------

    def _in_window(self, key: str, request: web.Request) -> web.StreamResponse | None:
        """A client that comes back before ``Retry-After`` has passed is refused again,
        with what is left of the wait."""
        window = self._windows.get(key)
        if window is None:
            return None
        until, fault = window
        left = until - self._clock()
        if left <= 0:
            del self._windows[key]
            return None
        if not (
            (fault.method is None or fault.method.upper() == request.method.upper())
            and (fault.path is None or fault.path == request.path)
        ):
            return None
        self.refused_in_window[fault.kind] += 1
        return _limited(fault, max(1, math.ceil(left)))

    def _over_order_limit(self, key: str, request: web.Request) -> bool:
        if self._order_rate_limit is None or request.method not in ("POST", "DELETE"):
            return False
        if request.path not in ("/api/v3/order", "/api/v3/openOrders"):
            return False
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(*self._order_rate_limit)
        return not bucket.take(self._clock())


def _limited(fault: Fault, retry_after_s: int) -> web.Response:
    """Binance's 429 (request weight exceeded) or 418 (IP banned), with ``Retry-After``."""
    if fault.kind == "ban":
        until = int(time.time() * 1000) + retry_after_s * 1000
        resp = error_response(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        )
    else:
        resp = error_response(
            429, -1003, "Too many requests; current limit is 6000 request weight per 1 MINUTE."
        )
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """The answer is lost: the connection closes without a response."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=504, text="connection lost")
