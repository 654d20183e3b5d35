"""Our own order updates, fills and balances from the exchange, through ccxt.

Websocket first (ccxt.pro ``watch_orders`` / ``watch_my_trades`` / ``watch_balance``); when the
venue or the connection does not allow it, polling (``fetch_open_orders``, ``fetch_my_trades``,
``fetch_balance``) takes over. Either way the stream starts with a snapshot of balances, open
orders and the fills after the last one it emitted (its resume state; all the venue returns on
a first start), so a restart re-learns the state and misses no fill.

The Bytewax source has one partition per account, so exactly one worker reads it, and its
``next_batch`` never blocks: the async reader runs through ``bytewax.inputs.batch_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import bytewax.operators as op
import ccxt.async_support as ccxt
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async

from makerflow import metrics
from makerflow.schemas.config import Config
from makerflow.schemas.events import BalanceSnapshot, Fill, OrderEvent
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.venue import (
    ClientSpec,
    Credentials,
    balances_from_ccxt,
    fill_from_ccxt,
    make_client,
    order_event_from_ccxt,
    retry_after_s,
)

log = logging.getLogger(__name__)

PrivateEvent = OrderEvent | Fill | BalanceSnapshot


class PrivateStreamConfig(Config, frozen=True, kw_only=True):
    """Whose private stream to read, and how. Credentials: as for the exchange sink."""

    venue: str = "binance"
    exchange_id: str = "binance"
    url: str | None = None
    account: str = "main"
    symbols: tuple[str, ...] = ("BTC/USDT",)
    """In a file with a ``[[markets]]`` registry, left out: the registry's markets of this
    venue and account (:mod:`makerflow.schemas.markets`)."""
    mode: Literal["auto", "websocket", "polling"] = "auto"
    poll_interval_s: float = 1.0
    reconnect_backoff_s: float = 0.5
    ws_max_failures: int = 3
    """``auto`` mode: websocket failures in a row before polling takes over."""
    fills_lookback_s: float = 120.0
    """How far back (exchange time) the periodic REST passes ask for our trades."""
    catch_up_interval_s: float | None = 5.0
    """Websocket mode: every this often, REST catches up what the socket may have missed
    (a user data stream drops events around a disconnect, and a reconnect does not replay
    them): fills after the last one emitted, orders that left the open list, balances.
    ``None``: trust the socket."""
    timeout_ms: int = 5_000
    api_key_env: str = "MAKERFLOW_EXCHANGE_API_KEY"
    secret_env: str = "MAKERFLOW_EXCHANGE_SECRET"
    api_key_file: str | None = None
    secret_file: str | None = None

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        return Credentials.load(self, env)


class _Dedup:
    """Remembers what was already emitted (bounded), since ws and polls can overlap."""

    def __init__(self, size: int = 50_000) -> None:
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._size = size

    def first(self, key: Any) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


class PrivateStreamReader:
    """The async reader: yields :data:`PrivateEvent` s forever."""

    def __init__(
        self,
        config: PrivateStreamConfig,
        client_factory: Callable[[bool], Any],
        last_trade_ids: Mapping[str, str] | None = None,
    ) -> None:
        """``client_factory(pro)`` returns a ccxt client (ccxt.pro when ``pro``).
        ``last_trade_ids`` (symbol -> the last trade id emitted before a restart): the
        start-up snapshot fetches only the fills after them."""
        self.config = config
        self.last_trade_ids: dict[str, str] = dict(last_trade_ids or {})
        self._factory = client_factory
        self._seen = _Dedup()
        self._cids: dict[str, str] = {}
        self._balances: dict[str, tuple[float, float, float]] = {}
        self._last_ts = 0
        self._catch_up_at: float | None = None
        self._live: dict[str, set[str]] = {}
        """symbol -> exchange ids of the orders last heard of as open (from any source), so
        a REST pass can ask how those that left the open list ended."""
        self.mode_used: str = ""

    # --- conversion with dedup --------------------------------------------------------

    def _order(self, order: Mapping[str, Any]) -> list[PrivateEvent]:
        cfg = self.config
        if order.get("id") is not None and order.get("clientOrderId"):
            self._cids[str(order["id"])] = str(order["clientOrderId"])
        ev = order_event_from_ccxt(
            order, venue=cfg.venue, account=cfg.account, fallback_ts=self._last_ts
        )
        self._last_ts = max(self._last_ts, ev.ts)
        if ev.exchange_order_id is not None:
            live = self._live.setdefault(ev.symbol, set())
            if ev.status in ("new", "ack", "partial"):
                live.add(ev.exchange_order_id)
            else:
                live.discard(ev.exchange_order_id)
        if not self._seen.first(("o", ev.client_order_id, ev.status, ev.filled_qty)):
            return []
        return [ev]

    def _fill(self, trade: Mapping[str, Any]) -> list[PrivateEvent]:
        cfg = self.config
        if not self._seen.first(("t", trade.get("symbol"), str(trade.get("id")))):
            return []
        cid = self._cids.get(str(trade.get("order")))
        fill = fill_from_ccxt(trade, venue=cfg.venue, account=cfg.account, client_order_id=cid)
        self._last_ts = max(self._last_ts, fill.ts)
        last = self.last_trade_ids.get(fill.symbol)
        if last is None or _id_after(fill.trade_id, last):
            self.last_trade_ids[fill.symbol] = fill.trade_id
        return [fill]

    def _balance(self, balance: Mapping[str, Any]) -> list[PrivateEvent]:
        cfg = self.config
        out: list[PrivateEvent] = []
        for snap in balances_from_ccxt(
            balance, venue=cfg.venue, account=cfg.account, ts=self._last_ts
        ):
            key = (snap.free, snap.used, snap.total)
            if self._balances.get(snap.asset) != key:
                self._balances[snap.asset] = key
                out.append(snap)
        return out

    # --- reading ----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[PrivateEvent]:
        """Every private event, forever. A dropped websocket reconnects with backoff and
        re-snapshots (nothing is lost, nothing repeats); in ``auto`` mode, after
        ``ws_max_failures`` failures in a row (or at once when the venue has no private
        websocket), polling takes over."""
        mode = self.config.mode
        failures = 0
        while mode != "polling":
            try:
                async for ev in self._websocket():
                    failures = 0
                    yield ev
            except ccxt.NotSupported as exc:
                if mode == "websocket":
                    raise
                log.warning("no private websocket (%s); polling instead", exc)
                break
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                failures += 1
                if mode == "auto" and failures >= self.config.ws_max_failures:
                    log.warning("private websocket failed %d times (%s); polling", failures, exc)
                    break
                delay = min(self.config.reconnect_backoff_s * 2 ** (failures - 1), 30.0)
                delay = max(delay, _venue_wait(exc))
                log.warning("private websocket failed (%s); reconnecting in %.2fs", exc, delay)
                await asyncio.sleep(delay)
        async for ev in self._polling():
            yield ev

    async def _snapshot(self, client: Any, out: list[PrivateEvent]) -> None:
        """Balances, open orders and the fills after the last one emitted, appended to
        ``out`` as they come: what was read before a failure is still emitted (the dedup has
        marked it seen, so it would never be emitted again)."""
        out += self._balance(await client.fetch_balance())
        for symbol in self.config.symbols:
            for order in await client.fetch_open_orders(symbol):
                out += self._order(order)
            await self._recent_fills(client, symbol, out)

    async def _recent_fills(
        self, client: Any, symbol: str, out: list[PrivateEvent], *, look_back: bool = False
    ) -> None:
        """Fills after the last one emitted (all the venue returns on a first start), with
        the orders they belong to when those are not known yet: REST trades carry only the
        exchange's order id, and the order gives the client order id.

        ``look_back`` (the periodic passes): the trades of the last ``fills_lookback_s``
        instead. A socket delivers fills out of order and loses some around a disconnect,
        so the newest trade id emitted is no mark below which everything was seen; the
        dedup drops what was."""
        last = self.last_trade_ids.get(symbol)
        lookback_ms = int(self.config.fills_lookback_s * 1000)
        since: int | None = None
        params: dict[str, Any] = {}
        if look_back and self._last_ts and lookback_ms > 0:
            since = max(self._last_ts // 1_000_000 - lookback_ms, 0)
        elif last is not None and last.isdigit():
            params = {"fromId": int(last) + 1}
        trades = await client.fetch_my_trades(symbol, since, None, params)
        for oid in sorted({str(t["order"]) for t in trades if t.get("order") is not None}):
            if oid not in self._cids:
                with contextlib.suppress(ccxt.OrderNotFound):
                    out += self._order(await client.fetch_order(oid, symbol))
        for t in trades:
            out += self._fill(t)

    async def _websocket(self) -> AsyncIterator[PrivateEvent]:
        client = self._factory(True)
        queue: asyncio.Queue[list[PrivateEvent] | BaseException] = asyncio.Queue()

        async def pump(watch: Callable[[], Any], convert: Callable[[Any], list[Any]]) -> None:
            try:
                while True:
                    items = await watch()
                    batch: list[PrivateEvent] = []
                    for item in items if isinstance(items, list) else [items]:
                        batch += convert(item)
                    if batch:
                        queue.put_nowait(batch)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                queue.put_nowait(exc)

        tasks: list[asyncio.Task[None]] = []
        try:
            await client.load_markets()
            # A refused or unreachable user data stream fails here, before anything is
            # emitted, so ``auto`` falls back to polling cleanly.
            await client.authenticate()
            # Subscribe first, snapshot second: nothing between the two is lost.
            for symbol in self.config.symbols:
                tasks.append(
                    asyncio.ensure_future(
                        pump(functools.partial(client.watch_orders, symbol), self._order)
                    )
                )
                tasks.append(
                    asyncio.ensure_future(
                        pump(functools.partial(client.watch_my_trades, symbol), self._fill)
                    )
                )
            tasks.append(asyncio.ensure_future(pump(client.watch_balance, self._balance)))
            if self.config.catch_up_interval_s is not None:
                tasks.append(asyncio.ensure_future(self._catch_up(client, queue)))
            self.mode_used = "websocket"
            snap: list[PrivateEvent] = []
            failed: Exception | None = None
            try:
                await self._snapshot(client, snap)
            except Exception as exc:
                failed = exc
            for ev in snap:
                yield ev
            if failed is not None:
                raise failed
            while True:
                got = await queue.get()
                if isinstance(got, BaseException):
                    # What the other pumps read before the failure goes out first: the dedup
                    # has marked it seen, so it would never be emitted again.
                    while not queue.empty():
                        more = queue.get_nowait()
                        if not isinstance(more, BaseException):
                            for ev in more:
                                yield ev
                    raise got
                for ev in got:
                    yield ev
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            await client.close()

    async def _catch_up(
        self, client: Any, queue: asyncio.Queue[list[PrivateEvent] | BaseException]
    ) -> None:
        """Beside the socket: the polling pass every ``catch_up_interval_s`` (what was
        already emitted is dropped by the dedup, so only what the socket missed goes out)."""
        interval = self.config.catch_up_interval_s
        assert interval is not None
        loop = asyncio.get_running_loop()
        while True:
            # The schedule outlives reconnects: a socket that keeps dropping (and so keeps
            # losing events) must not keep putting the catch-up off.
            if self._catch_up_at is None:
                self._catch_up_at = loop.time() + interval
            await asyncio.sleep(max(self._catch_up_at - loop.time(), 0.0))
            self._catch_up_at = loop.time() + interval
            batch: list[PrivateEvent] = []
            try:
                await self._poll_once(client, self._live, batch)
            except ccxt.BaseError as exc:
                log.warning("private stream catch-up failed (%s); retrying", exc)
                # A 429/418: the next pass waits as long as the venue asked.
                self._catch_up_at = loop.time() + max(interval, _venue_wait(exc, client))
            if batch:
                queue.put_nowait(batch)

    async def _polling(self) -> AsyncIterator[PrivateEvent]:
        client = self._factory(False)
        self.mode_used = "polling"
        try:
            await client.load_markets()
            while True:
                batch: list[PrivateEvent] = []
                wait = self.config.poll_interval_s
                try:
                    await self._poll_once(client, self._live, batch)
                except ccxt.NetworkError as exc:
                    log.warning("private stream poll failed (%s); retrying", exc)
                    # A 429/418: polling again before Retry-After only prolongs the ban.
                    wait = max(wait, _venue_wait(exc, client))
                for ev in batch:
                    yield ev
                await asyncio.sleep(wait)
        finally:
            await client.close()

    async def _poll_once(
        self, client: Any, open_ids: dict[str, set[str]], out: list[PrivateEvent]
    ) -> None:
        """One REST pass, appended to ``out`` as it goes (see :meth:`_snapshot`)."""
        for symbol in self.config.symbols:
            orders = await client.fetch_open_orders(symbol)
            now_open = {str(o["id"]) for o in orders}
            for o in orders:
                out += self._order(o)
            # Orders that left the open list: ask how they ended.
            for oid in sorted(open_ids.get(symbol, set()) - now_open):
                with contextlib.suppress(ccxt.OrderNotFound):
                    out += self._order(await client.fetch_order(oid, symbol))
            open_ids[symbol] = now_open
            await self._recent_fills(client, symbol, out, look_back=True)
        out += self._balance(await client.fetch_balance())


def _venue_wait(exc: BaseException, client: Any = None) -> float:
    """How long the venue asked us to wait (Retry-After of a 429/418), capped at a minute;
    0 when it did not say."""
    return min(retry_after_s(client, exc) or 0.0, 60.0) if client is not None else 0.0


def _id_after(a: str, b: str) -> bool:
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a > b


ResumeState = dict[str, str]
"""symbol -> the last trade id emitted, so a restarted stream backfills only newer fills."""


class _PrivatePartition(StatefulSourcePartition[PrivateEvent, ResumeState]):
    def __init__(self, reader: PrivateStreamReader) -> None:
        self._reader = reader
        self._loop = asyncio.new_event_loop()
        self._batches = batch_async(
            reader.events(), timedelta(milliseconds=50), 1000, loop=self._loop
        )

    def next_batch(self) -> list[PrivateEvent]:
        return next(self._batches)

    def snapshot(self) -> ResumeState:
        return dict(self._reader.last_trade_ids)

    def close(self) -> None:
        # Cancel the pending read: the reader's ``finally`` closes its ccxt client and its
        # watch tasks, so nothing is left for the garbage collector to finalize.
        loop = self._loop
        try:
            tasks = asyncio.all_tasks(loop)
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class PrivateStreamSource(FixedPartitionedSource[PrivateEvent, ResumeState]):
    """One partition per account (``venue:account``): exactly one worker reads it."""

    def __init__(
        self,
        config: PrivateStreamConfig,
        client_factory: Callable[[bool], Any] | None = None,
    ) -> None:
        self.config = config
        self._factory = client_factory

    def list_parts(self) -> list[str]:
        return [f"{self.config.venue}:{self.config.account}"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: ResumeState | None
    ) -> _PrivatePartition:
        factory = self._factory or default_client_factory(self.config)
        return _PrivatePartition(PrivateStreamReader(self.config, factory, resume_state))


def default_client_factory(config: PrivateStreamConfig) -> Callable[[bool], Any]:
    """ccxt clients for the config (the venue layer's): the local exchange's when ``url`` is
    set."""
    creds = config.credentials()
    spec = ClientSpec(exchange_id=config.exchange_id, url=config.url, timeout_ms=config.timeout_ms)
    return lambda pro: make_client(spec, creds, pro=pro)


@dataclass(frozen=True)
class PrivateStreams:
    orders: Stream[OrderEvent]
    fills: Stream[Fill]
    balances: Stream[BalanceSnapshot]


@operator
def private_stream(
    step_id: str,
    flow: Dataflow,
    config: PrivateStreamConfig,
    *,
    client_factory: Callable[[bool], Any] | None = None,
    stop: RunLatch | None = None,
) -> PrivateStreams:
    """Our order events, fills and balances from the exchange, as three streams.

    The stream is live and never ends by itself; with ``stop`` it ends once that latch says
    the run is over (an embedded run or a test over finite inputs).
    """
    source: Any = PrivateStreamSource(config, client_factory)
    if stop is not None:
        source = bounded(source, stop, finite=False)
    events: Stream[PrivateEvent] = op.input("read", flow, source)

    def count(ev: PrivateEvent) -> PrivateEvent:
        metrics.EVENTS_IN.labels(step=step_id).inc()
        return ev

    events = op.map("count", events, count)
    orders_b = op.branch("orders", events, lambda e: isinstance(e, OrderEvent))
    fills_b = op.branch("fills", orders_b.falses, lambda e: isinstance(e, Fill))
    return PrivateStreams(
        orders=orders_b.trues,  # type: ignore[arg-type]
        fills=fills_b.trues,  # type: ignore[arg-type]
        balances=fills_b.falses,  # type: ignore[arg-type]
    )
