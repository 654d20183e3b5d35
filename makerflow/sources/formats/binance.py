"""Raw Binance websocket recordings: ``<receive time ns> <raw JSON>`` per line.

Combined-stream frames (``{"stream": "btcusdt@depth@100ms", "data": {...}}``) for diff
depth, trades and bookTicker, plus REST depth snapshot lines (``{"lastUpdateId": ...}``).

The parser applies Binance's documented snapshot sync rule, so what it emits is a clean
stream (snapshot, then the diffs that follow it):

* spot: diffs are buffered until the snapshot; those with ``u <= lastUpdateId`` are dropped;
  the first applied has ``U <= lastUpdateId + 1 <= u``;
* futures (USDT-M, COIN-M): those with ``u < lastUpdateId`` are dropped; the first applied has
  ``U <= lastUpdateId <= u``; afterwards each ``pu`` equals the previous ``u`` (checked by
  the book, which receives ``pu`` as ``prev_seq``).

Event time is the exchange's ``E`` (depth) or ``T`` (trades), ms -> ns; a spot REST
snapshot has neither and takes the receive time.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import msgspec

from makerflow.schemas.codec import dead_letter
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Level, Trade
from makerflow.sources.formats import MarketData

log = logging.getLogger(__name__)

MarketType = Literal["spot", "usdm", "coinm"]

VENUES: dict[MarketType, str] = {"spot": "binance", "usdm": "binanceusdm", "coinm": "binancecoinm"}
"""ccxt exchange ids of Binance's three markets."""

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY")
_MS = 1_000_000
STEP = "recorded.binance"


def unified_symbol(raw: str, market: MarketType) -> str:
    """Binance's market id -> ccxt's unified symbol (``BTCUSDT`` -> ``BTC/USDT``, USDT-M
    ``BTC/USDT:USDT``, COIN-M ``BTCUSD_PERP`` -> ``BTC/USD:BTC``)."""
    raw = raw.upper()
    if market == "coinm":
        pair, _, expiry = raw.partition("_")
        base = pair[:-3] if pair.endswith("USD") else pair
        suffix = "" if expiry in ("", "PERP") else f"-{expiry}"
        return f"{base}/USD:{base}{suffix}"
    pair, _, expiry = raw.partition("_")
    for quote in _QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            base = pair[: -len(quote)]
            if market == "usdm":
                suffix = f"-{expiry}" if expiry else ""
                return f"{base}/{quote}:{quote}{suffix}"
            return f"{base}/{quote}"
    raise ValueError(f"cannot split Binance market id {raw!r} into base and quote")


def market_type_of(path_parts: tuple[str, ...], first_data: dict[str, Any] | None) -> MarketType:
    """Spot, USDT-M or COIN-M, from the recording's folder (``spot/``, ``usdm/``, ``cm/``)
    or else from a data frame (COIN-M frames carry ``ps``, futures ``pu``)."""
    lowered = [p.lower() for p in path_parts]
    for part in reversed(lowered):
        if part in ("usdm", "um", "futures"):
            return "usdm"
        if part in ("cm", "coinm"):
            return "coinm"
        if part == "spot":
            return "spot"
    if first_data is not None:
        if "ps" in first_data:
            return "coinm"
        if "pu" in first_data or ("T" in first_data and first_data.get("e") == "depthUpdate"):
            return "usdm"
    return "spot"


_LINE = re.compile(rb"^\s*(\d+)\s+(\{.*\})\s*$", re.S)


def split_line(line: bytes) -> tuple[int, bytes] | None:
    """``(receive ns, json body)`` of a recorded line, or ``None`` if it is not one."""
    m = _LINE.match(line)
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def _levels(raw: Any) -> tuple[Level, ...]:
    # a list comprehension, not a generator: tuple() of a list is ~2x faster on 20+ levels
    return tuple([(float(p), float(q)) for p, q in raw])


class BinanceRawParser:
    """Parses one market's recorded Binance frames into events (see the module doc)."""

    def __init__(
        self, venue: str, symbol: str, market: MarketType, *, max_buffer: int = 10_000
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.market = market
        self.max_buffer = max_buffer
        self.synced = False
        self._buffer: list[BookDelta] = []
        self.counts: dict[str, int] = {}

    # --- state -------------------------------------------------------------------------

    def state(self) -> tuple[bool, tuple[BookDelta, ...], tuple[tuple[str, int], ...]]:
        return (self.synced, tuple(self._buffer), tuple(sorted(self.counts.items())))

    def restore(self, state: Any) -> None:
        synced, buffer, counts = state
        self.synced = bool(synced)
        self._buffer = list(buffer)
        self.counts = dict(counts)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # --- parsing -----------------------------------------------------------------------

    def feed(self, line: bytes) -> list[MarketData | DeadLetter]:
        if not line.strip():
            return []
        parts = split_line(line)
        if parts is None:
            self._count("dead_letter")
            return [dead_letter(STEP, "not '<receive ns> <json>'", line.rstrip(b"\n"), ts=0)]
        recv, body = parts
        try:
            msg = msgspec.json.decode(body)
            return self._message(recv, msg)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            self._count("dead_letter")
            reason = f"bad Binance frame ({type(exc).__name__}: {exc})"
            return [dead_letter(STEP, reason, body, ts=recv)]

    def flush(self) -> list[MarketData | DeadLetter]:
        if self._buffer and not self.synced:
            log.warning(
                "%s:%s: %d diff updates without a depth snapshot at the end of the input",
                self.venue,
                self.symbol,
                len(self._buffer),
            )
        return []

    def _message(self, recv: int, msg: Any) -> list[MarketData | DeadLetter]:
        if not isinstance(msg, dict):
            raise TypeError("frame is not a JSON object")
        if "lastUpdateId" in msg:
            return self._snapshot(recv, msg)
        data = msg.get("data", msg)
        stream = str(msg.get("stream", ""))
        kind = data.get("e") if isinstance(data, dict) else None
        if kind == "depthUpdate":
            return self._delta(recv, data)
        if kind == "trade" or kind == "aggTrade":
            return [self._trade(recv, data)]
        if "bookTicker" in stream or kind == "bookTicker":
            # Best bid/ask frames duplicate what the L2 book already gives; counted, unused.
            self._count("book_ticker")
            return []
        raise ValueError(f"unknown frame type {kind!r} on stream {stream!r}")

    def _snapshot(self, recv: int, msg: dict[str, Any]) -> list[MarketData | DeadLetter]:
        seq = int(msg["lastUpdateId"])
        ts = int(msg["E"]) * _MS if "E" in msg else recv
        snap = BookSnapshot(
            ts=ts,
            recv_ts=recv,
            venue=self.venue,
            symbol=self.symbol,
            seq=seq,
            bids=_levels(msg["bids"]),
            asks=_levels(msg["asks"]),
        )
        self._count("snapshot")
        out: list[MarketData | DeadLetter] = [snap]
        if not self.synced:
            self.synced = True
            futures = self.market != "spot"
            for d in self._buffer:
                old = d.last_seq < seq if futures else d.last_seq <= seq
                if old:
                    self._count("dropped_before_snapshot")
                    continue
                out.append(d)
            self._buffer = []
        return out

    def _delta(self, recv: int, data: dict[str, Any]) -> list[MarketData | DeadLetter]:
        pu = data.get("pu")
        d = BookDelta(
            ts=int(data["E"]) * _MS,
            recv_ts=recv,
            venue=self.venue,
            symbol=self.symbol,
            first_seq=int(data["U"]),
            last_seq=int(data["u"]),
            prev_seq=None if pu is None else int(pu),
            bids=_levels(data["b"]),
            asks=_levels(data["a"]),
        )
        self._count("delta")
        if self.synced:
            return [d]
        self._buffer.append(d)
        if len(self._buffer) > self.max_buffer:
            del self._buffer[0]
            self._count("dropped_before_snapshot")
        return []

    def _trade(self, recv: int, data: dict[str, Any]) -> Trade:
        self._count("trade")
        trade_id = data["t"] if "t" in data else data["a"]
        return Trade(
            ts=int(data["T"]) * _MS,
            recv_ts=recv,
            venue=self.venue,
            symbol=self.symbol,
            trade_id=str(trade_id),
            price=float(data["p"]),
            qty=float(data["q"]),
            # ``m``: the buyer is the maker, so the taker sold.
            side="sell" if data["m"] else "buy",
        )
