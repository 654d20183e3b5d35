"""Tardis.dev CSV exports: ``incremental_book_L2``, ``trades``, ``quotes``, ``book_snapshot_N``.

Timestamps are microseconds (``timestamp`` = exchange time, ``local_timestamp`` = receive
time). ``incremental_book_L2`` rows that share a timestamp form one update; rows flagged
``is_snapshot`` form a snapshot. Tardis carries no update ids, so the parser numbers updates
itself (contiguous), which lets the book's sequence checks still catch a reordered file.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from makerflow.schemas.codec import dead_letter
from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Level, Trade
from makerflow.sources.formats import MarketData
from makerflow.sources.formats.binance import unified_symbol

log = logging.getLogger(__name__)

Kind = Literal["incremental_book_L2", "trades", "quotes", "book_snapshot"]
STEP = "recorded.tardis"
_US = 1_000

EXCHANGES = {
    "binance": "binance",
    "binance-futures": "binanceusdm",
    "binance-delivery": "binancecoinm",
    "deribit": "deribit",
    "bitmex": "bitmex",
    "bybit": "bybit",
    "okex": "okx",
    "okx": "okx",
    "huobi-dm-swap": "huobi",
    "coinbase": "coinbase",
}
"""Tardis exchange names -> ccxt exchange ids."""


def ccxt_market(exchange: str, symbol: str) -> tuple[str, str]:
    """``(venue, unified symbol)`` for a Tardis exchange and symbol, best effort: unknown
    names pass through (override them with the source's venue/symbol arguments)."""
    venue = EXCHANGES.get(exchange, exchange)
    s = symbol.upper()
    try:
        if exchange == "binance":
            return venue, unified_symbol(s, "spot")
        if exchange == "binance-futures":
            return venue, unified_symbol(s, "usdm")
        if exchange == "binance-delivery":
            return venue, unified_symbol(s, "coinm")
    except ValueError:
        return venue, symbol
    if exchange == "deribit" and s.endswith("-PERPETUAL"):
        base = s.split("-")[0]
        return venue, f"{base}/USD:{base}"
    if exchange == "bitmex" and s == "XBTUSD":
        return venue, "BTC/USD:BTC"
    if exchange == "huobi-dm-swap" and s.count("-") == 1:
        base, quote = s.split("-")
        return venue, f"{base}/{quote}:{base}"
    return venue, symbol


def kind_of(header: list[str]) -> Kind:
    cols = set(header)
    if {"is_snapshot", "side", "price", "amount"} <= cols:
        return "incremental_book_L2"
    if {"id", "side", "price", "amount"} <= cols:
        return "trades"
    if {"ask_amount", "ask_price", "bid_price", "bid_amount"} <= cols:
        return "quotes"
    if "asks[0].price" in cols:
        return "book_snapshot"
    raise ValueError(f"not a Tardis CSV this reader knows: columns {header}")


class TardisCsvParser:
    """One Tardis CSV file of one market (the header line first)."""

    def __init__(self, venue: str | None = None, symbol: str | None = None) -> None:
        self.venue = venue or ""
        self.symbol = symbol or ""
        self._fixed = venue is not None, symbol is not None
        self.header: list[str] | None = None
        self.kind: Kind | None = None
        self.seq = 0
        self._group: list[list[str]] = []
        self.counts: dict[str, int] = {}

    def state(self) -> Any:
        return (
            self.venue,
            self.symbol,
            self.header,
            self.kind,
            self.seq,
            tuple(tuple(r) for r in self._group),
        )

    def restore(self, state: Any) -> None:
        self.venue, self.symbol, header, self.kind, self.seq, group = state
        self.header = list(header) if header is not None else None
        self._group = [list(r) for r in group]

    def feed(self, line: bytes) -> list[MarketData | DeadLetter]:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return []
        row = text.split(",")
        if self.header is None:
            self.header = row
            self.kind = kind_of(row)
            return []
        if len(row) != len(self.header):
            return [self._dead(line, f"{len(row)} columns, header has {len(self.header)}")]
        self._name(row)
        try:
            if self.kind == "incremental_book_L2":
                return self._l2(row)
            if self.kind == "trades":
                return [self._trade(row)]
            if self.kind == "quotes":
                return [self._quote(row)]
            return [self._book_snapshot(row)]
        except (ValueError, IndexError) as exc:
            return [self._dead(line, f"bad Tardis row ({exc})")]

    def flush(self) -> list[MarketData | DeadLetter]:
        return self._emit_group()

    # --- rows --------------------------------------------------------------------------

    def _name(self, row: list[str]) -> None:
        if self.venue and self.symbol:
            return
        venue, symbol = ccxt_market(row[0], row[1])
        if not self._fixed[0]:
            self.venue = venue
        if not self._fixed[1]:
            self.symbol = symbol

    def _dead(self, line: bytes, reason: str) -> DeadLetter:
        self.counts["dead_letter"] = self.counts.get("dead_letter", 0) + 1
        return dead_letter(STEP, reason, line.rstrip(b"\n"), ts=0)

    def _l2(self, row: list[str]) -> list[MarketData | DeadLetter]:
        out: list[MarketData | DeadLetter] = []
        if self._group:
            first = self._group[0]
            # A new update starts at a new timestamp or where a snapshot begins or ends.
            if first[2] != row[2] or first[4] != row[4]:
                out = self._emit_group()
        float(row[6]), float(row[7])  # validate now so a bad row is its own dead letter
        self._group.append(row)
        return out

    def _emit_group(self) -> list[MarketData | DeadLetter]:
        rows, self._group = self._group, []
        if not rows:
            return []
        first = rows[0]
        ts, recv = int(first[2]) * _US, int(first[3]) * _US
        bids = tuple((float(r[6]), float(r[7])) for r in rows if r[5] in ("bid", "buy"))
        asks = tuple((float(r[6]), float(r[7])) for r in rows if r[5] in ("ask", "sell"))
        if first[4] == "true":
            self.seq += 1
            return [
                BookSnapshot(
                    ts=ts,
                    recv_ts=recv,
                    venue=self.venue,
                    symbol=self.symbol,
                    seq=self.seq,
                    bids=bids,
                    asks=asks,
                )
            ]
        self.seq += 1
        return [
            BookDelta(
                ts=ts,
                recv_ts=recv,
                venue=self.venue,
                symbol=self.symbol,
                first_seq=self.seq,
                last_seq=self.seq,
                bids=bids,
                asks=asks,
            )
        ]

    def _trade(self, row: list[str]) -> Trade:
        side = row[5]
        if side not in ("buy", "sell"):
            raise ValueError(f"trade side {side!r} is neither buy nor sell")
        return Trade(
            ts=int(row[2]) * _US,
            recv_ts=int(row[3]) * _US,
            venue=self.venue,
            symbol=self.symbol,
            trade_id=row[4],
            price=float(row[6]),
            qty=float(row[7]),
            side="buy" if side == "buy" else "sell",
        )

    def _snapshot_of(self, row: list[str], bids: list[Level], asks: list[Level]) -> BookSnapshot:
        self.seq += 1
        return BookSnapshot(
            ts=int(row[2]) * _US,
            recv_ts=int(row[3]) * _US,
            venue=self.venue,
            symbol=self.symbol,
            seq=self.seq,
            bids=tuple(bids),
            asks=tuple(asks),
        )

    def _quote(self, row: list[str]) -> BookSnapshot:
        assert self.header is not None
        col = {name: i for i, name in enumerate(self.header)}
        bids = [(float(row[col["bid_price"]]), float(row[col["bid_amount"]]))]
        asks = [(float(row[col["ask_price"]]), float(row[col["ask_amount"]]))]
        return self._snapshot_of(row, bids, asks)

    def _book_snapshot(self, row: list[str]) -> BookSnapshot:
        assert self.header is not None
        bids: list[Level] = []
        asks: list[Level] = []
        for i, name in enumerate(self.header):
            if name.endswith("].price") and row[i]:
                side = bids if name.startswith("bids") else asks
                side.append((float(row[i]), float(row[i + 1])))
        return self._snapshot_of(row, bids, asks)
