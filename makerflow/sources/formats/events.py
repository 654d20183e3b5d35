"""Files of makerflow's own events, one JSON event per line (what ``makerflow record
--output`` and the JSONL sink write): the simplest recorded format, already normalized."""

from __future__ import annotations

from typing import Any

import msgspec

from makerflow.schemas.codec import EventCodec, decode_or_dead_letter
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sources.formats import MarketData

STEP = "recorded.events"
_CODEC: EventCodec[MarketData] = EventCodec(BookSnapshot | BookDelta | Trade)


class EventLinesParser:
    """Decodes one event per line; anything else becomes a dead letter. A non-empty
    ``venue`` / ``symbol`` renames the market of every event."""

    def __init__(self, venue: str = "", symbol: str = "") -> None:
        self.venue = venue
        self.symbol = symbol

    def feed(self, line: bytes) -> list[MarketData | DeadLetter]:
        body = line.strip()
        if not body:
            return []
        ev = decode_or_dead_letter(_CODEC, STEP, body, ts=0)
        if isinstance(ev, DeadLetter) or not (self.venue or self.symbol):
            return [ev]
        venue = self.venue or ev.venue
        symbol = self.symbol or ev.symbol
        return [msgspec.structs.replace(ev, venue=venue, symbol=symbol)]

    def flush(self) -> list[MarketData | DeadLetter]:
        return []

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        return None
