"""The live ccxt source against a local Binance stand-in on loopback playing real recorded
frames: the unmodified ccxt pro ``binance`` client, its REST and websocket URLs pointed at
127.0.0.1. The stand-in serves ``exchangeInfo``, the REST depth snapshot (the recorded one,
then the book as of the frames already sent, like the real venue) and the ``/ws`` streams."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from aiohttp import WSMsgType, web
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from makerflow.operators.book import OrderBook
from makerflow.schemas.events import BookDelta, BookSnapshot, Trade
from makerflow.sources.ccxt_public import CcxtMarketsConfig, ccxt_public_input
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES
from tests.unit.test_book import ReferenceBook

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
DEPTH = 20

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def _symbol_info() -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "status": "TRADING",
        "baseAsset": "BTC",
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1000000",
                "tickSize": "0.01",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001",
                "maxQty": "9000",
                "stepSize": "0.00001",
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }


class RecordedBinance:
    """Plays one recorded Binance spot file: frames go out once, in recorded order, across
    connections; a connection can be cut after ``cut_after`` frames to force a reconnect."""

    def __init__(self, path: Path, cut_after: int | None = None) -> None:
        self.snapshot: dict[str, Any] = {}
        self.frames: list[tuple[str, dict[str, Any]]] = []
        with gzip.open(path, "rb") as f:
            for line in f:
                msg = json.loads(line.split(b" ", 1)[1])
                if "lastUpdateId" in msg:
                    self.snapshot = msg
                elif not msg["stream"].endswith("@bookTicker"):
                    self.frames.append((msg["stream"], msg["data"]))
        self.cursor = 0
        self.subs: dict[str, set[web.WebSocketResponse]] = {}
        self._producer: asyncio.Task[None] | None = None
        self.cut_after = cut_after
        self.connections = 0
        self.book_subscriptions = 0
        self.depth_requests = 0
        self._book: dict[str, dict[str, str]] = {
            "bids": {p: q for p, q in self.snapshot["bids"]},
            "asks": {p: q for p, q in self.snapshot["asks"]},
        }
        self._last_id = self.snapshot["lastUpdateId"]
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordedBinance:
        self._thread.start()
        assert self._ready.wait(10), "local Binance did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/ws/{tail:.*}", self._ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(runner.cleanup())

    async def _exchange_info(self, _r: web.Request) -> web.Response:
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": 1723161254000,
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [_symbol_info()],
            }
        )

    async def _depth(self, _r: web.Request) -> web.Response:
        # The venue's book as of the frames sent so far (the recorded snapshot at first).
        self.depth_requests += 1
        bids = sorted(self._book["bids"].items(), key=lambda x: -float(x[0]))
        asks = sorted(self._book["asks"].items(), key=lambda x: float(x[0]))
        return web.json_response(
            {"lastUpdateId": self._last_id, "bids": bids[:1000], "asks": asks[:1000]}
        )

    def _apply(self, data: dict[str, Any]) -> None:
        if data["u"] <= self._last_id:
            return
        for side, levels in (("bids", data["b"]), ("asks", data["a"])):
            for p, q in levels:
                if float(q) == 0:
                    self._book[side].pop(p, None)
                else:
                    self._book[side][p] = q
        self._last_id = data["u"]

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            req = json.loads(msg.data)
            if req.get("method") == "SUBSCRIBE":
                for stream in req["params"]:
                    self.subs.setdefault(stream, set()).add(ws)
                    if stream.endswith("@depth@100ms"):
                        self.book_subscriptions += 1
                await ws.send_json({"result": None, "id": req["id"]})
                if self._producer is None:
                    self._producer = asyncio.create_task(self._produce())
        for subscribers in self.subs.values():
            subscribers.discard(ws)
        return ws

    async def _produce(self) -> None:
        """One feed for every connection, as on the venue: each frame goes to the sockets
        subscribed to its stream. It waits while nobody watches the book (a reconnect), so
        the test keeps the whole recording."""
        depth = "btcusdt@depth@100ms"
        for _ in range(100):  # give ccxt's trade subscription a moment to arrive too
            if len(self.subs) >= 2:
                break
            await asyncio.sleep(0.01)
        sent: dict[int, int] = {}
        while self.cursor < len(self.frames):
            while not self.subs.get(depth):
                await asyncio.sleep(0.01)
            stream, data = self.frames[self.cursor]
            self.cursor += 1
            if stream == depth:
                self._apply(data)
            for ws in list(self.subs.get(stream, ())):
                if ws.closed:
                    continue
                await ws.send_json(data)
                n = sent[id(ws)] = sent.get(id(ws), 0) + 1
                first_book_socket = stream == depth and self.book_subscriptions == 1
                if self.cut_after is not None and n == self.cut_after and first_book_socket:
                    for subscribers in self.subs.values():
                        subscribers.discard(ws)
                    await ws.close()
            if self.cursor % 25 == 0:
                await asyncio.sleep(0.002)


def ccxt_config(server: RecordedBinance) -> dict[str, Any]:
    import ccxt.pro

    urls = copy.deepcopy(ccxt.pro.binance().urls)
    base = server.url
    for name in ("public", "private"):
        urls["api"][name] = f"{base}/api/v3"
    urls["api"]["ws"]["spot"] = base.replace("http://", "ws://") + "/ws"
    return {
        "urls": urls,
        "hostname": "127.0.0.1",
        # The loopback stand-in plays minutes of frames in a second; ccxt's rate limiter
        # would hold the 1000-level depth request (weight 50) for seconds.
        "enableRateLimit": False,
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    }


def reference_tops() -> Iterator[tuple[int, tuple[Any, Any]]]:
    """(update id, best DEPTH levels) after every recorded diff, by the brute-force book."""
    ref = ReferenceBook()
    for ev in read_recorded(SPOT):
        if isinstance(ev, BookSnapshot):
            ref.apply(ev)
            yield ev.seq, ref.levels(DEPTH)
        elif isinstance(ev, BookDelta):
            ref.apply(ev)
            yield ev.last_seq, ref.levels(DEPTH)


def run_source(server: RecordedBinance, max_events: int) -> list[Any]:
    config = CcxtMarketsConfig(
        markets=("binance:BTC/USDT",),
        exchange_config={"binance": ccxt_config(server)},
        depth=DEPTH,
        backoff_start_s=0.1,
        max_events=max_events,
    )
    flow = Dataflow("ccxt_test")
    out: list[Any] = []
    op.output("out", ccxt_public_input("md", flow, config), TestingSink(out))
    run_main(flow)
    return out


def check_against_recording(events: list[Any]) -> tuple[int, int]:
    tops = dict(reference_tops())
    book = OrderBook("binance", "BTC/USDT", max_depth=DEPTH)
    checked = 0
    for ev in events:
        if isinstance(ev, BookSnapshot | BookDelta):
            assert book.apply(ev) == []
            seq = ev.seq if isinstance(ev, BookSnapshot) else ev.last_seq
            assert (book.bids.levels(DEPTH), book.asks.levels(DEPTH)) == tops[seq]
            checked += 1
    recorded_trades = [e.trade_id for e in read_recorded(SPOT) if isinstance(e, Trade)]
    trades = [e for e in events if isinstance(e, Trade)]
    ids = [t.trade_id for t in trades]
    assert ids == recorded_trades[: len(ids)]  # every trade, once, in order
    return checked, len(trades)


def test_ccxt_source_turns_recorded_frames_into_the_same_book() -> None:
    with RecordedBinance(SPOT) as server:
        events = run_source(server, max_events=600)
    assert len(events) == 600
    assert isinstance(events[0], BookSnapshot | Trade)
    assert all(e.venue == "binance" and e.symbol == "BTC/USDT" for e in events)
    assert all(e.recv_ts > 0 and e.ts > 0 for e in events)
    books, trades = check_against_recording(events)
    # ccxt hands over its latest book when asked, so book states coalesce when frames come
    # faster than the flow asks; every state handed over must still be exact.
    assert books >= 10 and trades > 50
    first_trade = next(e for e in events if isinstance(e, Trade))
    assert first_trade.ts == 1723161255342 * 1_000_000  # the exchange's T, not the clock
    assert server.book_subscriptions == 1  # no reconnect was needed


def test_ccxt_source_reconnects_and_resyncs_after_a_dropped_connection() -> None:
    with RecordedBinance(SPOT, cut_after=150) as server:
        events = run_source(server, max_events=700)
    assert server.book_subscriptions >= 2
    snapshots = [e for e in events if isinstance(e, BookSnapshot)]
    assert len(snapshots) >= 2, "a fresh snapshot follows the reconnect"
    books, _ = check_against_recording(events)
    assert books >= 10


def test_record_to_a_file_then_ticks_from_it(tmp_path: Path) -> None:
    from makerflow.cli import main
    from makerflow.commands.record import build_record_flow
    from makerflow.schemas.events import Tick
    from makerflow.sinks.jsonl import read_jsonl

    recording = tmp_path / "rec.jsonl"
    with RecordedBinance(SPOT) as server:
        config = CcxtMarketsConfig(
            markets=("binance:BTC/USDT",),
            exchange_config={"binance": ccxt_config(server)},
            depth=DEPTH,
            max_events=400,
        )
        run_main(build_record_flow(config, output=str(recording)))
    recorded = list(read_recorded(recording))
    assert len(recorded) == 400 and isinstance(recorded[0], BookSnapshot | Trade)
    ticks = tmp_path / "ticks.jsonl"
    assert main(["ticks", "--input", str(recording), "--output", str(ticks)]) == 0
    got = read_jsonl(ticks, Tick)
    assert got and all(t.key == "binance:BTC/USDT" for t in got)
    assert all(t.bid < t.ask for t in got)
