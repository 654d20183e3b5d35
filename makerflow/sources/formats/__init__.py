"""Parsers of recorded market-data formats into market events.

Each parser is pure (bytes in, events out, no I/O) and keeps the little state its format
needs (the Binance snapshot sync, Tardis rows grouped by timestamp) so the recorded-file
source can snapshot it for resuming.
"""

from __future__ import annotations

from typing import Any, Protocol

from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade

MarketData = BookSnapshot | BookDelta | Trade
"""What a market-data source emits."""


class LineParser(Protocol):
    """A format's parser: one line of the file at a time."""

    venue: str
    symbol: str

    def feed(self, line: bytes) -> list[MarketData | DeadLetter]:
        """The events one line gives (often none, sometimes several)."""
        ...

    def flush(self) -> list[MarketData | DeadLetter]:
        """Events still held at the end of the input."""
        ...

    def state(self) -> Any:
        """A picklable copy of the parser's state, for resuming."""
        ...

    def restore(self, state: Any) -> None: ...
