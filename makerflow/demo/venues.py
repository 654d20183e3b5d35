"""The demo's markets: the recordings it replays and the crash it can put into all of them.

The traded market is Binance spot BTC/USDT, replayed by the local exchange (it fills our
quotes). Beside it the index prices BTC from the recordings of the same two minutes on
Binance USDT-M (``BTC/USDT:USDT``) and COIN-M (``BTC/USD:BTC``) and from the chain's pool, so
its outlier rules have four venues to judge. The futures files hold their depth snapshot and
diff updates only (their trades and book tickers are not read by the index).

Everything is moved to the present by one offset, so the exchange, the recordings, the chain
and the wall-clock staleness check share one clock; a :class:`Crash` moves every replayed
price at the same moment, as a real crash moves every venue.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import msgspec

from makerflow.exchange.market_data import BookTop, MarketEvent
from makerflow.schemas.events import BookDelta, BookSnapshot, Level, Trade
from makerflow.sources.formats import MarketData

DATA_DIR = Path(__file__).resolve().parent / "data"
SPOT = DATA_DIR / "binance_spot_btcusdt_20240808_2min.gz"
"""The traded market: Binance spot BTC/USDT, 2024-08-08 23:54:14 on, 2 minutes."""
REFERENCE = (
    DATA_DIR / "binance_usdm_btcusdt_20240808_2min.gz",
    DATA_DIR / "binance_cm_btcusd_perp_20240808_2min.gz",
)
"""The same minutes on Binance USDT-M and COIN-M, read by the index only."""


def first_time_ns(path: Path) -> int:
    """The receive time of the recording's first line."""
    with gzip.open(path, "rt") as f:
        return int(f.readline().split(" ", 1)[0])


@dataclass(frozen=True)
class Crash:
    """``--crash-at S --crash-pct P``: from ``S`` seconds into the replay on, every price of
    every replayed market is moved by ``P`` percent (a flash crash, or a spike for P > 0)."""

    at_s: float
    pct: float

    @property
    def factor(self) -> Decimal:
        return 1 + Decimal(str(self.pct)) / 100

    def applies(self, time_ms: int, start_ms: int) -> bool:
        return time_ms >= start_ms + self.at_s * 1_000


_CENT = Decimal("0.01")


def crashed(events: Iterator[MarketEvent], crash: Crash, start_ms: int) -> Iterator[MarketEvent]:
    """The exchange's replayed market with ``crash`` applied (prices kept on the 0.01 tick)."""
    f = crash.factor
    for ev in events:
        if not crash.applies(ev.time_ms, start_ms):
            yield ev
        elif isinstance(ev, BookTop):
            yield dataclasses.replace(
                ev, bid=(ev.bid * f).quantize(_CENT), ask=(ev.ask * f).quantize(_CENT)
            )
        else:
            yield dataclasses.replace(ev, price=(ev.price * f).quantize(_CENT))


def _levels(levels: tuple[Level, ...], f: float) -> tuple[Level, ...]:
    return tuple((round(p * f, 2), q) for p, q in levels)


class ReferenceBook:
    """One recorded reference market moved to the present and, from the crash on, crashed
    (pure: no I/O, no clock). It keeps the market's book, so the first crashed update can
    remove every level at the old prices and set the whole book at the new ones: scaling
    only the updates would leave the old levels standing and cross the book."""

    def __init__(self, offset_ns: int, crash: Crash | None, start_ns: int) -> None:
        self.offset_ns = offset_ns
        self.crash_ns = None if crash is None else start_ns + int(crash.at_s * 1e9)
        self.factor = 1.0 if crash is None else float(crash.factor)
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.crashed = False

    def _apply(self, bids: tuple[Level, ...], asks: tuple[Level, ...]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)

    def move(self, ev: MarketData) -> MarketData:
        ts = ev.ts + self.offset_ns
        changes: dict[str, object] = {"ts": ts}
        if ev.recv_ts:
            changes["recv_ts"] = ev.recv_ts + self.offset_ns
        if isinstance(ev, BookSnapshot):
            self.bids, self.asks = {}, {}
        if isinstance(ev, BookSnapshot | BookDelta):
            self._apply(ev.bids, ev.asks)
        if self.crash_ns is not None and ts >= self.crash_ns:
            f = self.factor
            if isinstance(ev, BookDelta) and not self.crashed:
                # Every level before the update goes; the book after it comes at new prices.
                gone = tuple((p, 0.0) for p, _ in ev.bids), tuple((p, 0.0) for p, _ in ev.asks)
                old_bids = tuple((p, 0.0) for p in self.bids) + gone[0]
                old_asks = tuple((p, 0.0) for p in self.asks) + gone[1]
                changes["bids"] = old_bids + _levels(tuple(self.bids.items()), f)
                changes["asks"] = old_asks + _levels(tuple(self.asks.items()), f)
                self.crashed = True
            elif isinstance(ev, BookSnapshot | BookDelta):
                changes["bids"] = _levels(ev.bids, f)
                changes["asks"] = _levels(ev.asks, f)
                self.crashed = self.crashed or isinstance(ev, BookSnapshot)
            elif isinstance(ev, Trade):
                changes["price"] = round(ev.price * f, 2)
        return msgspec.structs.replace(ev, **changes)


def move_reference(
    book: ReferenceBook | None, ev: MarketData, *, factory: ReferenceBookFactory
) -> tuple[ReferenceBook, MarketData]:
    """``stateful_map`` mapper: one :class:`ReferenceBook` per market."""
    book = book or factory()
    return book, book.move(ev)


@dataclass(frozen=True)
class ReferenceBookFactory:
    offset_ns: int
    crash: Crash | None
    start_ns: int

    def __call__(self) -> ReferenceBook:
        return ReferenceBook(self.offset_ns, self.crash, self.start_ns)
