"""The public market streams (Binance's ``/ws`` and ``/stream``): ``<sym>@trade``,
``<sym>@depth[@100ms]`` (diffs whose ``U``/``u`` continue the REST depth's
``lastUpdateId``) and ``<sym>@bookTicker``, built from what each engine change touched."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from makerflow.exchange.engine import ZERO, MatchingEngine, Outcome
from makerflow.exchange.market_data import PublicTrade
from makerflow.exchange.wire import fmt


class PublicStreams:
    """Subscribers per stream name, the last published depth and top of book per symbol,
    and the depth sequence."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self._streams: dict[str, set[web.WebSocketResponse]] = {}
        self._published_depth: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self._depth_seq: dict[str, int] = {}
        self._tops: dict[str, Any] = {}
        self._public_trade_ids = itertools.count(1)

    def depth_seq(self, symbol: str) -> int:
        """The last depth update id published for ``symbol`` (the REST depth's
        ``lastUpdateId``)."""
        return self._depth_seq.get(symbol, 0)

    async def close(self) -> None:
        for subscribers in self._streams.values():
            for ws in list(subscribers):
                await ws.close()

    def messages(
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
                        "p": fmt(price),
                        "q": fmt(qty),
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
                    diffs[side].append([fmt(price), fmt(qty)])
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
                            "b": fmt(bid[0]),
                            "B": fmt(bid[1]),
                            "a": fmt(ask[0]),
                            "A": fmt(ask[1]),
                        },
                    )
                )
        return msgs

    async def send(self, stream: str, msg: dict[str, Any]) -> None:
        for ws in list(self._streams.get(stream, ())):
            try:
                await ws.send_json(msg)
            except (ConnectionError, RuntimeError):
                self._streams[stream].discard(ws)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
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
