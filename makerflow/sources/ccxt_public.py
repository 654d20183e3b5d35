"""Live public market data from ccxt pro (``watch_order_book`` / ``watch_trades``).

One Bytewax partition per market (``venue:symbol``), each with its own asyncio loop and its
own ccxt client, driven through :func:`bytewax.inputs.batch_async` so ``next_batch`` never
blocks longer than a short timeout.

ccxt keeps the full book itself (snapshot + diffs with Binance's sync rule, a re-sync on any
gap). The source turns it into events: a :class:`BookSnapshot` of the best ``depth`` levels
when a book (re)starts, then :class:`BookDelta` s that carry exactly the levels of the top
``depth`` that changed (size 0 = gone), numbered with ccxt's nonce (the venue's update id),
so a downstream book built from them equals ccxt's top ``depth`` after every update.
Errors (disconnects, a ccxt checksum/sequence error) restart the watch with exponential
backoff; the next book after a restart is a fresh snapshot. A fresh snapshot is also emitted
every ``snapshot_every_s`` so consumers joining a topic late (or after a gap) can resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async

from makerflow import metrics
from makerflow.schemas.events import (
    BookDelta,
    BookSnapshot,
    Level,
    Trade,
    market_key,
    split_market_key,
)
from makerflow.sources.formats import MarketData

log = logging.getLogger(__name__)

_MS = 1_000_000


@dataclass(frozen=True)
class CcxtMarketsConfig:
    """What the live source watches and how.

    :arg markets: ``venue:symbol`` keys (``binance:BTC/USDT``); ``venue`` is a ccxt pro id.
    :arg exchange_config: ccxt constructor options per venue (urls, options, timeouts).
    """

    markets: tuple[str, ...]
    exchange_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    depth: int = 50
    book_limit: int | None = None
    """``limit`` passed to ``watch_order_book`` (ccxt's own default when ``None``)."""
    trades: bool = True
    snapshot_every_s: float = 60.0
    backoff_start_s: float = 0.5
    backoff_max_s: float = 30.0
    batch_timeout_s: float = 0.05
    max_events: int | None = None
    """Stop a partition after this many events (bounded recordings and tests)."""


def split_market(key: str) -> tuple[str, str]:
    """``binance:BTC/USDT:USDT`` -> ``("binance", "BTC/USDT:USDT")``."""
    venue, symbol = split_market_key(key)
    if not venue or not symbol:
        raise ValueError(f"market {key!r} is not 'venue:symbol' (e.g. binance:BTC/USDT)")
    return venue, symbol


class TopOfBookDiffer:
    """Turns successive full books into a snapshot then diffs of the top ``depth`` levels
    (pure: the caller passes times in)."""

    def __init__(self, venue: str, symbol: str, depth: int) -> None:
        self.venue = venue
        self.symbol = symbol
        self.depth = depth
        self.bids: dict[float, float] | None = None
        self.asks: dict[float, float] = {}
        self.seq = 0

    def reset(self) -> None:
        """Forget the last book: the next one is emitted as a snapshot."""
        self.bids = None

    def update(
        self,
        bids: Sequence[Sequence[float]],
        asks: Sequence[Sequence[float]],
        *,
        nonce: int | None,
        ts: int,
        recv_ts: int,
    ) -> BookSnapshot | BookDelta | None:
        nb = {float(p): float(q) for p, q, *_ in bids[: self.depth]}
        na = {float(p): float(q) for p, q, *_ in asks[: self.depth]}
        if self.bids is None:
            # A snapshot is valid at the venue's id as it is, even one the book already had.
            seq = nonce if nonce is not None else self.seq + 1
            self.bids, self.asks, self.seq = nb, na, seq
            return BookSnapshot(
                ts=ts,
                recv_ts=recv_ts,
                venue=self.venue,
                symbol=self.symbol,
                seq=seq,
                bids=tuple(nb.items()),
                asks=tuple(na.items()),
            )
        db = _diff(self.bids, nb)
        da = _diff(self.asks, na)
        if not db and not da:
            return None
        first = self.seq + 1
        seq = nonce if nonce is not None and nonce > self.seq else first
        self.bids, self.asks, self.seq = nb, na, seq
        return BookDelta(
            ts=ts,
            recv_ts=recv_ts,
            venue=self.venue,
            symbol=self.symbol,
            first_seq=first,
            last_seq=seq,
            bids=db,
            asks=da,
        )


def _diff(old: dict[float, float], new: dict[float, float]) -> tuple[Level, ...]:
    # Removals first: a depth-bounded book then has room for the levels that enter the top.
    changed = [(p, 0.0) for p in old if p not in new]
    changed.extend((p, q) for p, q in new.items() if old.get(p) != q)
    return tuple(changed)


def _trade(venue: str, symbol: str, t: dict[str, Any], recv_ts: int) -> Trade:
    ts = t.get("timestamp")
    return Trade(
        ts=int(ts) * _MS if ts is not None else recv_ts,
        recv_ts=recv_ts,
        venue=venue,
        symbol=symbol,
        trade_id=str(t.get("id")),
        price=float(t["price"]),
        qty=float(t["amount"]),
        side="sell" if t.get("side") == "sell" else "buy",
    )


ExchangeFactory = Callable[[str, dict[str, Any]], Any]


def default_factory(venue: str, config: dict[str, Any]) -> Any:
    """A ccxt pro client for ``venue`` (created inside the partition's event loop)."""
    import ccxt.pro as ccxtpro

    try:
        cls = getattr(ccxtpro, venue)
    except AttributeError:
        raise ValueError(f"ccxt pro has no exchange {venue!r}") from None
    return cls({"enableRateLimit": True, **config})


class _MarketWatch:
    """The async side of one partition: two watch loops feeding one queue."""

    def __init__(self, key: str, cfg: CcxtMarketsConfig, factory: ExchangeFactory) -> None:
        self.key = key
        self.venue, self.symbol = split_market(key)
        self.cfg = cfg
        self.factory = factory
        self.exchange: Any = None
        self.queue: asyncio.Queue[MarketData] = asyncio.Queue(maxsize=10_000)
        self.differ = TopOfBookDiffer(self.venue, self.symbol, cfg.depth)
        self.tasks: list[asyncio.Task[None]] = []
        self.errors = 0
        self.last_event_wall = time.time()

    async def start(self) -> None:
        self.exchange = self.factory(self.venue, self.cfg.exchange_config.get(self.venue, {}))
        self.tasks.append(asyncio.create_task(self._watch_books()))
        if self.cfg.trades:
            self.tasks.append(asyncio.create_task(self._watch_trades()))

    async def stream(self) -> AsyncIterator[MarketData]:
        await self.start()
        while True:
            yield await self.queue.get()

    async def _retrying(self, what: str, body: Callable[[], Any]) -> None:
        delay = self.cfg.backoff_start_s
        while True:
            try:
                await body()
                delay = self.cfg.backoff_start_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                self.differ.reset()
                log.warning(
                    "%s %s: %s: %s; retrying in %.1f s",
                    self.key,
                    what,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)

    async def _watch_books(self) -> None:
        last_snapshot = time.time()

        async def once() -> None:
            nonlocal last_snapshot
            ob = await self.exchange.watch_order_book(self.symbol, self.cfg.book_limit)
            now = time.time()
            if now - last_snapshot >= self.cfg.snapshot_every_s:
                self.differ.reset()
            recv = time.time_ns()
            stamp = ob.get("timestamp")
            ev = self.differ.update(
                ob["bids"],
                ob["asks"],
                nonce=ob.get("nonce"),
                ts=int(stamp) * _MS if stamp else recv,
                recv_ts=recv,
            )
            if isinstance(ev, BookSnapshot):
                last_snapshot = now
            if ev is not None:
                await self.queue.put(ev)

        await self._retrying("watch_order_book", once)

    async def _watch_trades(self) -> None:
        async def once() -> None:
            trades = await self.exchange.watch_trades(self.symbol)
            recv = time.time_ns()
            for t in trades:
                await self.queue.put(_trade(self.venue, self.symbol, t, recv))

        await self._retrying("watch_trades", once)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.exchange is not None:
            await self.exchange.close()


class _CcxtPartition(StatefulSourcePartition[MarketData, None]):
    def __init__(self, key: str, cfg: CcxtMarketsConfig, factory: ExchangeFactory) -> None:
        self.key = key
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.watch = _MarketWatch(key, cfg, factory)
        self.batches = batch_async(
            self.watch.stream(),
            timedelta(seconds=cfg.batch_timeout_s),
            1000,
            loop=self.loop,
        )
        self.count = 0
        self._age = metrics.MARKET_DATA_AGE.labels(market=key)
        self._out = metrics.EVENTS_OUT.labels(step=f"ccxt:{key}")
        self._lag = metrics.EVENT_TIME_LAG.labels(step=f"ccxt:{key}")

    def next_batch(self) -> Iterable[MarketData]:
        if self.cfg.max_events is not None and self.count >= self.cfg.max_events:
            raise StopIteration()
        batch = next(self.batches)
        now = time.time()
        if batch:
            self.watch.last_event_wall = now
            if self.cfg.max_events is not None:
                batch = batch[: self.cfg.max_events - self.count]
            self.count += len(batch)
            self._out.inc(len(batch))
            last = batch[-1]
            self._lag.set((last.recv_ts - last.ts) / 1e9)
        # Liveness is a wall-clock matter, measured here at the edge.
        self._age.set(now - self.watch.last_event_wall)
        return batch

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.watch.close())
            # ccxt spawns its own tasks (snapshot fetches, the throttler): end them too.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self.loop.close()


class CcxtPublicSource(FixedPartitionedSource[MarketData, None]):
    """Live books and trades of ``config.markets`` through ccxt pro, one partition each.

    A live feed has nothing to resume: after a restart each market starts from a fresh
    snapshot (resume state is ``None``).
    """

    def __init__(
        self, config: CcxtMarketsConfig, factory: ExchangeFactory = default_factory
    ) -> None:
        for key in config.markets:
            split_market(key)
        self.config = config
        self.factory = factory

    def list_parts(self) -> list[str]:
        return list(dict.fromkeys(self.config.markets))

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _CcxtPartition:
        return _CcxtPartition(for_part, self.config, self.factory)


@operator
def ccxt_public_input(
    step_id: str, flow: Dataflow, config: CcxtMarketsConfig
) -> Stream[MarketData]:
    """Live book updates and trades of the configured markets (see the module doc)."""
    return op.input("ccxt", flow, CcxtPublicSource(config))


def markets_of(keys: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated ``venue:symbol`` keys."""
    out = []
    for k in keys:
        venue, symbol = split_market(k.strip())
        out.append(market_key(venue, symbol))
    return tuple(dict.fromkeys(out))
