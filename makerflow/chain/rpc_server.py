"""An Ethereum JSON-RPC server over HTTP on loopback, in front of an in-process EVM.

Sources talk to a chain only through ``AsyncWeb3`` + ``AsyncHTTPProvider``, exactly as they do
to a production node; this server is what they talk to in tests and the demo. It runs an
aiohttp application on its own thread and event loop, hands each JSON-RPC call to a handler
(:meth:`makerflow.chain.local.LocalChain.rpc`), and can fail for real: HTTP 503s, JSON-RPC
errors, slow answers, or no listener at all (:meth:`RpcServer.stop`), so the sources' back-off
is tested against real failures rather than mocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

log = logging.getLogger(__name__)

FailureMode = Literal["http_503", "rpc_error", "slow"]
RpcHandler = Callable[[str, list[Any]], dict[str, Any]]
"""Takes a method and its params; returns ``{"result": ...}`` or ``{"error": {...}}``."""


class RpcServer:
    """JSON-RPC over HTTP on ``host:port`` (port 0 picks a free one, kept across restarts)."""

    def __init__(self, handler: RpcHandler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._failures: deque[tuple[FailureMode, float]] = deque()
        self._failures_lock = threading.Lock()
        self.requests_served = 0
        self.requests_failed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> RpcServer:
        """Start listening (again, on the same port after :meth:`stop`)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="makerflow-chain-rpc", daemon=True
            )
            self._thread.start()
        if self._runner is None:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop listening: clients get connection refused until :meth:`start` is called."""
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._unlisten(), self._loop).result(timeout=10)

    def close(self) -> None:
        """Stop listening and end the server's thread."""
        self.stop()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- failure injection ----------------------------------------------------------------

    def fail_next(self, count: int, mode: FailureMode = "http_503", delay_s: float = 2.0) -> None:
        """Fail the next ``count`` HTTP requests: with an HTTP 503, with a JSON-RPC error, or
        by answering only after ``delay_s`` seconds (``slow``, to trip client time-outs)."""
        with self._failures_lock:
            self._failures.extend([(mode, delay_s)] * count)

    @property
    def pending_failures(self) -> int:
        with self._failures_lock:
            return len(self._failures)

    def _take_failure(self) -> tuple[FailureMode, float] | None:
        with self._failures_lock:
            return self._failures.popleft() if self._failures else None

    # --- serving ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else ()  # type: ignore[attr-defined]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._runner = runner
        log.info("chain JSON-RPC listening on %s", self.url)

    async def _unlisten(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("chain JSON-RPC on %s stopped", self.url)

    async def _handle(self, request: web.Request) -> web.Response:
        failure = self._take_failure()
        if failure is not None:
            self.requests_failed += 1
            mode, delay = failure
            if mode == "http_503":
                return web.Response(status=503, text="injected failure: node unavailable")
            if mode == "slow":
                await asyncio.sleep(delay)
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json(_error(None, -32700, "parse error"))
        if failure is not None and failure[0] == "rpc_error":
            calls = body if isinstance(body, list) else [body]
            errors = [
                _error(c.get("id"), -32000, "injected failure: header not found") for c in calls
            ]
            return _json(errors if isinstance(body, list) else errors[0])
        if isinstance(body, list):
            return _json([self._call(c) for c in body])
        return _json(self._call(body))

    def _call(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _error(None, -32600, "invalid request")
        params = call.get("params") or []
        try:
            answer = self._handler(call["method"], list(params))
        except Exception as exc:  # a bad call must answer an error, never kill the server
            log.exception("chain RPC %s failed", call["method"])
            answer = {"error": {"code": -32603, "message": f"internal error: {exc}"}}
        self.requests_served += 1
        return {"jsonrpc": "2.0", "id": call.get("id"), **answer}


def _error(call_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}


def _json(payload: Any) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), content_type="application/json")
