"""Bybit v5 public websocket messages, one JSON per line (Bybit's public archive
``*_ob500.data`` files and recorded ``publicTrade`` frames).

``orderbook.N.SYMBOL`` messages are a ``snapshot`` then ``delta`` s whose update id ``u``
rises by one per message, so a delta covers ``u..u`` and continuity is spot-style (the book
checks ``first_seq == seq + 1``). Bybit resends a snapshot after a service restart; it
passes through as a snapshot. Times are the message ``ts`` (ms) -> ns; the archive has no
receive time, so ``recv_ts`` is 0 (pacing then follows event time).
"""

from __future__ import annotations

from typing import Any

import msgspec

from makerflow.schemas.codec import dead_letter
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Level, Trade
from makerflow.sources.formats import MarketData

STEP = "recorded.bybit"
_MS = 1_000_000
_QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH", "EUR")


def unified_symbol(raw: str, category: str = "linear") -> str:
    """Bybit's market id -> ccxt's unified symbol (``XRPUSDT`` linear -> ``XRP/USDT:USDT``,
    inverse ``BTCUSD`` -> ``BTC/USD:BTC``, spot ``XRPUSDT`` -> ``XRP/USDT``)."""
    raw = raw.upper()
    for quote in _QUOTES:
        if raw.endswith(quote) and len(raw) > len(quote):
            base = raw[: -len(quote)]
            if category == "spot":
                return f"{base}/{quote}"
            if category == "inverse" or quote == "USD":
                return f"{base}/{quote}:{base}"
            return f"{base}/{quote}:{quote}"
    raise ValueError(f"cannot split Bybit market id {raw!r} into base and quote")


def is_bybit(msg: Any) -> bool:
    topic = msg.get("topic", "") if isinstance(msg, dict) else ""
    return isinstance(topic, str) and topic.startswith(("orderbook.", "publicTrade."))


def _levels(raw: Any) -> tuple[Level, ...]:
    return tuple((float(p), float(q)) for p, q in raw)


class BybitParser:
    """One Bybit market's recorded messages."""

    def __init__(self, venue: str, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.counts: dict[str, int] = {}

    def state(self) -> Any:
        return tuple(sorted(self.counts.items()))

    def restore(self, state: Any) -> None:
        self.counts = dict(state)

    def flush(self) -> list[MarketData | DeadLetter]:
        return []

    def feed(self, line: bytes) -> list[MarketData | DeadLetter]:
        body = line.strip()
        if not body:
            return []
        try:
            msg = msgspec.json.decode(body)
            if not is_bybit(msg):
                raise ValueError("not an orderbook or publicTrade message")
            if msg["topic"].startswith("orderbook."):
                return [self._book(msg)]
            return list(self._trades(msg))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.counts["dead_letter"] = self.counts.get("dead_letter", 0) + 1
            return [dead_letter(STEP, f"bad Bybit message ({exc})", body, ts=0)]

    def _book(self, msg: dict[str, Any]) -> BookSnapshot | BookDelta:
        data = msg["data"]
        ts = int(msg["ts"]) * _MS
        u = int(data["u"])
        if msg["type"] == "snapshot":
            return BookSnapshot(
                ts=ts,
                venue=self.venue,
                symbol=self.symbol,
                seq=u,
                bids=_levels(data["b"]),
                asks=_levels(data["a"]),
            )
        if msg["type"] != "delta":
            raise ValueError(f"unknown orderbook message type {msg['type']!r}")
        return BookDelta(
            ts=ts,
            venue=self.venue,
            symbol=self.symbol,
            first_seq=u,
            last_seq=u,
            bids=_levels(data["b"]),
            asks=_levels(data["a"]),
        )

    def _trades(self, msg: dict[str, Any]) -> list[Trade]:
        return [
            Trade(
                ts=int(t["T"]) * _MS,
                venue=self.venue,
                symbol=self.symbol,
                trade_id=str(t["i"]),
                price=float(t["p"]),
                qty=float(t["v"]),
                side="buy" if t["S"] == "Buy" else "sell",
            )
            for t in msg["data"]
        ]
