"""Recorded market data as a Bytewax source: one partition per market, resumable.

Formats (detected from each file's first line): raw Binance websocket recordings
(``<recv ns> <json>``, gzip or plain), Tardis CSV exports, Bybit v5 messages (its public
``ob500`` archives, zip), and makerflow's own event JSONL.
Files of one market (``btcusdt_20240808.gz`` then ``_20240809.gz``) are read in name order
as one partition. ``speed=None`` replays as fast as possible; ``speed=k`` paces the replay
at k times the recorded receive-time rate (through ``next_awake``, never sleeping).
The resume state of a partition is ``(file index, line number, parser state)``.
"""

from __future__ import annotations

import gzip
import io
import logging
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from makerflow import metrics
from makerflow.schemas.events import DeadLetter, market_key
from makerflow.sources.formats import LineParser, MarketData
from makerflow.sources.formats.binance import (
    VENUES,
    BinanceRawParser,
    market_type_of,
    split_line,
    unified_symbol,
)
from makerflow.sources.formats.bybit import BybitParser, is_bybit
from makerflow.sources.formats.bybit import unified_symbol as bybit_symbol
from makerflow.sources.formats.events import EventLinesParser
from makerflow.sources.formats.tardis import TardisCsvParser, ccxt_market
from makerflow.sources.kafka import EventStreams

log = logging.getLogger(__name__)

Format = Literal["binance", "tardis", "bybit", "events"]
PartState = tuple[int, int, Any]
"""(file index, lines consumed in that file, parser state)."""


@dataclass(frozen=True)
class RecordedMarket:
    """One partition: a market's files in order, their format and the market's names."""

    name: str
    fmt: Format
    venue: str
    symbol: str
    paths: tuple[Path, ...]
    market_type: str = ""

    def parser(self) -> LineParser:
        if self.fmt == "binance":
            return BinanceRawParser(self.venue, self.symbol, self.market_type)  # type: ignore[arg-type]
        if self.fmt == "tardis":
            return TardisCsvParser(self.venue, self.symbol)
        if self.fmt == "bybit":
            return BybitParser(self.venue, self.symbol)
        return EventLinesParser(self.venue, self.symbol)


def open_lines(path: Path) -> io.BufferedIOBase:
    """The file as binary lines, gunzipped when it is gzip (by its magic bytes)."""
    with path.open("rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        # GzipFile.readline is a Python method per line (a closed check, then its buffer's
        # readline); a BufferedReader over it reads lines in C from its decompressed chunks.
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 16)
    if magic == b"PK":
        # A zip archive (Bybit's public data): its first member.
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if not names:
            raise ValueError(f"{path}: empty zip archive")
        return archive.open(names[0])  # type: ignore[return-value]
    return path.open("rb")


def _first_lines(path: Path, n: int = 50) -> list[bytes]:
    out: list[bytes] = []
    with open_lines(path) as f:
        for line in f:
            if line.strip():
                out.append(line)
            if len(out) >= n:
                break
    return out


def describe(path: Path, venue: str | None = None, symbol: str | None = None) -> RecordedMarket:
    """Detect a file's format and market from its first lines."""
    lines = _first_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty file, nothing to replay")
    first = lines[0]
    if split_line(first) is not None:
        data: dict[str, Any] | None = None
        raw_symbol = ""
        for line in lines:
            parts = split_line(line)
            if parts is None:
                continue
            msg = msgspec.json.decode(parts[1])
            if isinstance(msg, dict) and isinstance(msg.get("data"), dict):
                data = msg["data"]
                raw_symbol = str(data.get("s") or msg.get("stream", "").split("@")[0])
                break
        mtype = market_type_of(path.parts, data)
        v = venue or VENUES[mtype]
        s = symbol or (unified_symbol(raw_symbol, mtype) if raw_symbol else "")
        if not s:
            raise ValueError(f"{path}: no market id in the first frames; pass symbol=")
        return RecordedMarket(market_key(v, s), "binance", v, s, (path,), mtype)
    if first.lstrip().startswith(b"{"):
        ev = msgspec.json.decode(first)
        if is_bybit(ev):
            raw = str(ev["topic"]).split(".")[-1]
            v = venue or "bybit"
            s = symbol or bybit_symbol(raw)
            return RecordedMarket(market_key(v, s), "bybit", v, s, (path,))
        v = venue or (ev.get("venue", "") if isinstance(ev, dict) else "")
        s = symbol or (ev.get("symbol", "") if isinstance(ev, dict) else "")
        return RecordedMarket(market_key(v, s) or path.name, "events", v, s, (path,))
    header = first.decode("utf-8", "replace").strip().split(",")
    if "exchange" in header and "symbol" in header and len(lines) > 1:
        row = lines[1].decode("utf-8", "replace").strip().split(",")
        v0, s0 = ccxt_market(row[header.index("exchange")], row[header.index("symbol")])
        v, s = venue or v0, symbol or s0
        return RecordedMarket(market_key(v, s), "tardis", v, s, (path,))
    raise ValueError(
        f"{path}: unknown format; expected '<recv ns> <json>' Binance lines,"
        " a Tardis CSV with a header, Bybit v5 messages, or makerflow event JSONL"
    )


def _expand(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path().glob(str(item))) if not p.is_absolute() else []
            if not matches:
                matches = sorted(p.parent.glob(p.name))
            if not matches:
                raise FileNotFoundError(f"no recorded file at {item}")
            out.extend(matches)
    return out


def discover(
    paths: str | Path | Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
) -> list[RecordedMarket]:
    """Group files into partitions: one per (format, market); a market's files join in name
    order. Files of one market in different Tardis kinds stay separate partitions."""
    groups: dict[tuple[str, str, str], RecordedMarket] = {}
    gkey: tuple[str, str, str]
    for path in _expand(paths):
        m = describe(path, venue, symbol)
        if m.fmt == "tardis":
            gkey = (m.fmt, m.name, path.name.split("_")[1] if "_" in path.name else path.name)
        elif m.fmt == "events":
            gkey = (m.fmt, m.name, str(path))
        else:
            gkey = (m.fmt, m.name, "")
        if gkey in groups:
            g = groups[gkey]
            groups[gkey] = RecordedMarket(
                g.name, g.fmt, g.venue, g.symbol, (*g.paths, path), g.market_type
            )
        else:
            groups[gkey] = m
    out: list[RecordedMarket] = []
    names: dict[str, int] = {}
    for m in groups.values():
        # Partition names must be unique; a second partition of one market gets a suffix.
        n = names.get(m.name, 0)
        names[m.name] = n + 1
        name = m.name if n == 0 else f"{m.name}#{n}"
        out.append(
            RecordedMarket(name, m.fmt, m.venue, m.symbol, tuple(sorted(m.paths)), m.market_type)
        )
    return sorted(out, key=lambda m: m.name)


def event_time(ev: MarketData | DeadLetter) -> int:
    """The receive time (for pacing) of an event, its event time when it has none."""
    recv = getattr(ev, "recv_ts", 0)
    return int(recv or ev.ts)


class _RecordedPartition(StatefulSourcePartition[MarketData | DeadLetter, PartState]):
    def __init__(
        self,
        market: RecordedMarket,
        resume: PartState | None,
        speed: float | None,
        batch_size: int,
    ) -> None:
        self.market = market
        self.speed = speed
        self.batch_size = batch_size
        self.parser = market.parser()
        self.file_idx = 0
        self.line_no = 0
        if resume is not None:
            self.file_idx, self.line_no, pstate = resume
            self.parser.restore(pstate)
        self._lines: Iterator[bytes] | None = None
        self._file: io.BufferedIOBase | None = None
        self._pending: list[MarketData | DeadLetter] = []
        self._start: tuple[float, int] | None = None
        self._awake: datetime | None = None
        self._dead = metrics.DEAD_LETTERS.labels(step=f"recorded:{market.name}")
        self._out = metrics.EVENTS_OUT.labels(step="recorded")
        self._done = False

    def _open(self) -> bool:
        while self.file_idx < len(self.market.paths):
            if self._lines is None:
                self._file = open_lines(self.market.paths[self.file_idx])
                self._lines = iter(self._file)
                for _ in range(self.line_no):
                    next(self._lines, None)
            return True
        return False

    def _next_line_events(self) -> list[MarketData | DeadLetter] | None:
        """The events of the next line, ``[]`` for a quiet line, ``None`` at the very end."""
        lines = self._lines
        if lines is not None:  # the open file's next line: the common case, once per line
            line = next(lines, None)
            if line is not None:
                self.line_no += 1
                return self.parser.feed(line)
        while self._open():
            assert self._lines is not None
            line = next(self._lines, None)
            if line is not None:
                self.line_no += 1
                return self.parser.feed(line)
            if self._file is not None:
                self._file.close()
            self._lines = None
            self._file = None
            self.file_idx += 1
            self.line_no = 0
        if self._done:
            return None
        self._done = True
        return self.parser.flush()

    def _due(self, ev: MarketData | DeadLetter) -> float | None:
        """Wall-clock time the event is due, or None when replaying as fast as possible."""
        if self.speed is None:
            return None
        t = event_time(ev)
        if self._start is None:
            self._start = (time.time(), t)
        wall0, t0 = self._start
        return wall0 + (t - t0) / 1e9 / self.speed

    def next_batch(self) -> Iterable[MarketData | DeadLetter]:
        out: list[MarketData | DeadLetter] = []
        self._awake = None
        while len(out) < self.batch_size:
            if not self._pending:
                evs = self._next_line_events()
                if evs is None:
                    if out:
                        break
                    raise StopIteration()
                self._pending = evs
                if not evs:
                    continue
            due = self._due(self._pending[0])
            if due is not None and due > time.time():
                self._awake = datetime.fromtimestamp(due, tz=UTC)
                break
            out.extend(self._pending)
            self._pending = []
        for ev in out:
            if isinstance(ev, DeadLetter):
                self._dead.inc()
        self._out.inc(len(out))
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> PartState:
        # Events of a line already read but not yet emitted are re-read on resume.
        line_no = self.line_no - 1 if self._pending else self.line_no
        return (self.file_idx, max(line_no, 0), self.parser.state())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class RecordedSource(FixedPartitionedSource[MarketData | DeadLetter, PartState]):
    """Recorded market data, one partition per market (see the module doc).

    :arg paths: a file, a directory, a glob or a list of them.
    :arg venue: rename the venue (ccxt exchange id) of every market read.
    :arg symbol: rename the symbol (ccxt unified symbol) of every market read.
    :arg speed: ``None`` for as fast as possible, else a multiple of recorded time.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        venue: str | None = None,
        symbol: str | None = None,
        speed: float | None = None,
        batch_size: int = 500,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
        self.markets = {m.name: m for m in discover(paths, venue=venue, symbol=symbol)}
        self.speed = speed
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return list(self.markets)

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartState | None
    ) -> _RecordedPartition:
        return _RecordedPartition(self.markets[for_part], resume_state, self.speed, self.batch_size)


def read_recorded(
    paths: str | Path | Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
) -> Iterator[MarketData | DeadLetter]:
    """Every event of the recording, market after market, without Bytewax (tests, tools)."""
    for market in discover(paths, venue=venue, symbol=symbol):
        part = _RecordedPartition(market, None, None, 10_000)
        try:
            while True:
                try:
                    yield from part.next_batch()
                except StopIteration:
                    break
        finally:
            part.close()


@operator
def recorded_input(
    step_id: str,
    flow: Dataflow,
    paths: str | Path | Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
    speed: float | None = None,
) -> EventStreams[MarketData]:
    """Recorded market data as events (``oks``) and unreadable lines (``errs``)."""
    src = RecordedSource(paths, venue=venue, symbol=symbol, speed=speed)
    raw = op.input("read", flow, src)
    split = op.branch("split", raw, lambda x: not isinstance(x, DeadLetter))
    return EventStreams(oks=split.trues, errs=split.falses)  # type: ignore[arg-type]
