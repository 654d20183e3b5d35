"""The user data stream (Binance's WebSocket API, ``userDataStream.subscribe.signature``):
``executionReport`` and ``outboundAccountPosition`` events per account, and the ways a live
private stream misbehaves, taken from the :class:`~makerflow.exchange.faults.FaultPlan`:
an event delivered twice, an order report overtaken by later ones (a fill before its order's
``NEW``, a fill after the order's later update), and a disconnect whose gap is lost for good
(a reconnect does not replay it; only REST queries show what happened meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from makerflow.exchange.faults import Fault, FaultPlan
from makerflow.exchange.wire import ApiError, ApiKey, check_signature, check_timestamp

log = logging.getLogger(__name__)

OVERTAKEN_GAP_S = 0.05
"""How long after the reports that overtook it a reordered event follows."""


@dataclass
class _Held:
    """An event held back by a ``reorder_event`` fault until ``left`` later order reports of
    its account went out (or its timer fired)."""

    event: dict[str, Any]
    left: int


class UserDataStream:
    """Subscribed sockets per account, and delivery through the event faults."""

    def __init__(
        self,
        keys: Mapping[str, ApiKey],
        faults: Callable[[], FaultPlan],
        *,
        check_time: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``faults``: the server's current plan (it may be replaced). ``clock``: the edge's
        wall clock for disconnect gaps (monotonic seconds)."""
        self._keys = keys
        self._faults = faults
        self._check_time = check_time
        self._clock = clock
        self._sockets: dict[str, dict[web.WebSocketResponse, int]] = {}
        self._subscription_ids = itertools.count(0)
        self._held: dict[str, list[_Held]] = {}
        self._gap_until: dict[str, float] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.missed: Counter[str] = Counter()
        """Events lost in a disconnect gap, per account."""
        self.delivered: Counter[str] = Counter()

    # --- delivery ---------------------------------------------------------------------

    def subscribed(self, account: str) -> int:
        return len(self._sockets.get(account, {}))

    async def publish(self, account: str, event: dict[str, Any]) -> None:
        """Deliver one event to the account's subscribers, through the event faults."""
        if self._in_gap(account):
            self.missed[account] += 1
            return
        fault = self._faults().take_event(event)
        if fault is None:
            await self._deliver(account, event)
            await self._overtaken(account, event)
        elif fault.kind == "duplicate_event":
            log.info("delivering %s %s twice", event.get("x"), event.get("c"))
            await self._deliver(account, event)
            await self._overtaken(account, event)
            self._later(account, event, fault.delay_s)
        elif fault.kind == "reorder_event":
            self._hold(account, event, fault)
        else:  # stream_disconnect
            await self.disconnect(account, fault.gap_s)
            self.missed[account] += 1

    async def disconnect(self, account: str, gap_s: float) -> None:
        """Drop the account's user data connections; every event of the next ``gap_s``
        seconds is lost (a reconnect inside the gap gets nothing until it ends)."""
        log.info("dropping the user data stream of %s for %.2fs", account, gap_s)
        self._gap_until[account] = max(self._gap_until.get(account, 0.0), self._clock() + gap_s)
        for ws in list(self._sockets.pop(account, {})):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=1011, message=b"connection lost")

    def _in_gap(self, account: str) -> bool:
        until = self._gap_until.get(account)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._gap_until[account]
        return False

    def _hold(self, account: str, event: dict[str, Any], fault: Fault) -> None:
        log.info("holding back %s %s", event.get("x"), event.get("c"))
        held = _Held(event, fault.hold)
        self._held.setdefault(account, []).append(held)
        self._later(account, event, fault.delay_s, held)

    def _later(
        self, account: str, event: dict[str, Any], delay_s: float, held: _Held | None = None
    ) -> None:
        """Deliver ``event`` after ``delay_s`` (a duplicate's copy; a held event whose
        overtaking reports never came), unless it was released meanwhile."""
        loop = asyncio.get_running_loop()

        def release() -> None:
            self._timers.discard(handle)
            if held is not None:
                if held not in self._held.get(account, []):
                    return
                self._held[account].remove(held)
            task = loop.create_task(self._release(account, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_log_failure)

        handle = loop.call_later(delay_s, release)
        self._timers.add(handle)

    async def _release(self, account: str, event: dict[str, Any]) -> None:
        if self._in_gap(account):
            self.missed[account] += 1
            return
        await self._deliver(account, event)

    async def _overtaken(self, account: str, event: Mapping[str, Any]) -> None:
        """An order report went out: held events it overtook may follow now."""
        held = self._held.get(account)
        if not held or event.get("e") != "executionReport":
            return
        for h in list(held):
            h.left -= 1
            if h.left <= 0:
                held.remove(h)
                # A moment after what overtook it, as a late packet comes: a client reading
                # both in one go would otherwise see only the last state of the order.
                self._later(account, h.event, OVERTAKEN_GAP_S)

    async def _deliver(self, account: str, event: dict[str, Any]) -> None:
        for ws, sub_id in list(self._sockets.get(account, {}).items()):
            try:
                await ws.send_json({"subscriptionId": sub_id, "event": event})
                self.delivered[account] += 1
            except (ConnectionError, RuntimeError):
                self._sockets.get(account, {}).pop(ws, None)

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for sockets in self._sockets.values():
            for ws in list(sockets):
                await ws.close()

    # --- the WebSocket API endpoint ---------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
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
                await ws.send_json(self._request(ws, req, accounts))
        finally:
            for account in accounts:
                self._sockets.get(account, {}).pop(ws, None)
        return ws

    def _request(
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
            key = self._keys.get(str(params.get("apiKey", "")))
            if key is None:
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            signature = str(params.get("signature", ""))
            fields = {k: str(v) for k, v in params.items() if k != "signature"}
            # WebSocket API requests sign their params sorted by name, unencoded.
            check_signature(key, "&".join(f"{k}={fields[k]}" for k in sorted(fields)), signature)
            if self._check_time:
                check_timestamp(fields, int(time.time() * 1000))
        except ApiError as exc:
            return {
                "id": rid,
                "status": exc.status,
                "error": {"code": exc.code, "msg": exc.message},
            }
        accounts.add(key.account)
        sub_id = next(self._subscription_ids)
        self._sockets.setdefault(key.account, {})[ws] = sub_id
        return {"id": rid, "status": 200, "result": {"subscriptionId": sub_id}}


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("releasing a held private event failed", exc_info=task.exception())
