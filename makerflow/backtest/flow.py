"""The backtest dataflow: tagged input streams -> one engine per quoted market -> files.

Wiring::

    recorded files / Kafka partitions ─► tag (stream, position, merge time) + progress marks
        ─► route: an event to every quoted market it concerns (its own market; a basket
           constituent or DEX price to the markets quoted off that basket); marks to all
        ─► per quoted market: ChunkMerger (event-time order, independent of arrival)
           ─► MarketEngine (ticks, index, risk, quoting, reconciliation, simulated venue)
        ─► one part file per market ─► <out>/<name>.jsonl

Determinism: each key's input order is a function of the data (see
:mod:`makerflow.backtest.merge`), the engine is pure, and the files are put together after
the run by engine time, then market, then emission order, so 1 or N workers write the same
bytes. A market or basket read by several engines is written by the first of them (by key).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from makerflow.backtest.engine import STREAMS, MarketEngine, Output
from makerflow.backtest.merge import Chunk, ChunkMerger, Progress
from makerflow.backtest.settings import BacktestConfig
from makerflow.operators.index import split_symbol
from makerflow.schemas.codec import encode
from makerflow.schemas.events import ControlCommand, DexPrice, MarketEvent, OraclePrice
from makerflow.schemas.scopes import GLOBAL, covers, validate_scope

logger = logging.getLogger(__name__)


class Router:
    """Which quoted markets (keys) an input event concerns, and who writes what."""

    def __init__(self, config: BacktestConfig) -> None:
        self.config = config
        self.keys = tuple(sorted(m.key for m in config.quoting.markets))
        if not self.keys:
            raise ValueError("a backtest needs at least one quoted market ([[quoting.markets]])")
        baskets = {b.name: b for b in config.index.baskets}
        self._pairs: dict[str, set[tuple[str, str]]] = {}
        self.baskets_of: dict[str, tuple[str, ...]] = {}
        for key in self.keys:
            m = config.quoting.market(key)
            r = config.risk.market(key)
            names = sorted(
                {n for n in (m.index_basket if m else None, r.index_basket if r else None) if n}
            )
            self.baskets_of[key] = tuple(names)
            pairs = self._pairs[key] = set()
            for n in names:
                b = baskets.get(n)
                if b is not None:
                    pairs.update((a.asset, q) for a in b.assets for q in b.quotes)
        self._memo: dict[str, tuple[str, ...]] = {}

    def targets(self, ev: Any) -> tuple[str, ...]:
        if isinstance(ev, MarketEvent):
            name = ev.key
            got = self._memo.get(name)
            if got is None:
                got = self._memo[name] = self._market_targets(name, ev.symbol)
                if not got:
                    logger.warning(
                        "%s is neither quoted nor in a quoted market's index basket:"
                        " its events are not replayed",
                        name,
                    )
            return got
        if isinstance(ev, DexPrice):
            return tuple(k for k in self.keys if (ev.base, ev.quote) in self._pairs[k])
        if isinstance(ev, OraclePrice):
            return tuple(k for k in self.keys if any(a == ev.base for a, _ in self._pairs[k]))
        if isinstance(ev, ControlCommand):
            return self._scope_targets(ev.scope) or self.keys[:1]
        return self.keys[:1]  # a dead letter of the input: written once

    def _scope_targets(self, scope: str) -> tuple[str, ...]:
        """The quoted markets a halt of ``scope`` stops (none for a malformed scope)."""
        try:
            validate_scope(scope)
        except ValueError:
            return ()
        out = []
        for k in self.keys:
            m = self.config.quoting.market(k)
            if m is not None and covers(scope, m.venue, m.symbol, m.account):
                out.append(k)
        return tuple(out)

    def _market_targets(self, name: str, symbol: str) -> tuple[str, ...]:
        try:
            base, quote, derivative = split_symbol(symbol)
        except ValueError:
            return (name,) if name in self.keys else self.keys[:1]
        usable = not derivative or self.config.index.include_derivatives
        return tuple(
            k for k in self.keys if k == name or (usable and (base, quote) in self._pairs[k])
        )

    def owns(self, key: str) -> Callable[[str], bool]:
        """Whether ``key``'s engine writes the ticks of a market / prices of a basket."""

        def check(name: str) -> bool:
            if name in self.keys:  # a quoted market: its own engine
                return name == key
            if name == GLOBAL or name.partition(":")[0] in ("market", "asset", "account"):
                return self._scope_targets(name)[:1] == (key,)  # a risk scope
            if ":" in name:  # a market: the first of the keys its events go to
                got = self._memo.get(name)
                if got is None:
                    got = self._market_targets(name, name.split(":", 1)[1])
                return got[:1] == (key,)
            holders = [k for k in self.keys if name in self.baskets_of[k]]
            return holders[:1] == [key]

        return check

    def route(self, item: Chunk | Progress) -> list[tuple[str, tuple[str, Chunk | Progress]]]:
        """A chunk split by key (in stream order); a key with none of its events gets the
        chunk's progress, so it never waits on this stream for nothing."""
        if isinstance(item, Progress):
            return [(k, (k, item)) for k in self.keys]
        per_key: dict[str, list[tuple[int, int, Any]]] = {}
        targets = self.targets
        for entry in item.items:
            for k in targets(entry[2]):
                got = per_key.get(k)
                if got is None:
                    per_key[k] = [entry]
                else:
                    got.append(entry)
        out: list[tuple[str, tuple[str, Chunk | Progress]]] = []
        for k in self.keys:
            mine = per_key.get(k)
            part: Chunk | Progress = (
                Chunk(item.stream, tuple(mine), item.mts)
                if mine
                else Progress(item.stream, item.mts)
            )
            out.append((k, (k, part)))
        return out


class _EngineLogic(StatefulBatchLogic[tuple[str, Chunk | Progress], Any, None]):
    def __init__(self, config: BacktestConfig, streams: tuple[str, ...], router: Router) -> None:
        self.config = config
        self.router = router
        self.merger = ChunkMerger(streams)
        self.engine: MarketEngine | None = None
        self.idx = 0

    def _engine(self, key: str) -> MarketEngine:
        if self.engine is None:
            self.engine = MarketEngine(key, self.config, owns=self.router.owns(key))
            self.idx = self.router.keys.index(key)
        return self.engine

    def on_batch(self, values: list[tuple[str, Chunk | Progress]]) -> tuple[list[Any], bool]:
        engine = self._engine(values[0][0])
        push = self.merger.push
        feed = engine.feed
        for _, item in values:
            for mts, _, ev in push(item):
                feed(mts, ev)
        return self._lines(engine.take()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Any], bool]:
        if self.engine is None:
            return [], StatefulBatchLogic.RETAIN
        for mts, _, ev in self.merger.flush():
            self.engine.feed(mts, ev)
        return self._lines(self.engine.finish()), StatefulBatchLogic.RETAIN

    def _lines(self, out: list[Output]) -> list[tuple[str, bytes]]:
        prefix = b"\t%d\t" % self.idx
        return [(name, b"%d" % now + prefix + encode(ev)) for name, now, ev in out]

    def snapshot(self) -> None:
        return None  # a backtest reruns from the start; nothing to resume


class _PartWriter(StatefulSinkPartition[tuple[str, bytes], None]):
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.files: dict[str, BinaryIO] = {}

    def write_batch(self, values: list[tuple[str, bytes]]) -> None:
        files = self.files
        for name, line in values:
            f = files.get(name)
            if f is None:
                f = files[name] = (self.dir / f"{name}.tsv").open("ab")
            f.write(line)
            f.write(b"\n")

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class PartsSink(FixedPartitionedSink[tuple[str, bytes], None]):
    """One directory of files per quoted market, put together by :func:`assemble`."""

    def __init__(self, directory: Path, keys: Sequence[str]) -> None:
        self.dir = directory
        self.keys = list(keys)

    def list_parts(self) -> list[str]:
        return [str(i) for i in range(len(self.keys))]

    def part_fn(self, item_key: str) -> int:
        return self.keys.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PartWriter:
        return _PartWriter(self.dir / for_part)


def build_backtest_flow(
    source: FixedPartitionedSource[Chunk | Progress, Any],
    config: BacktestConfig,
    parts_dir: Path,
    flow_id: str = "backtest",
) -> Dataflow:
    """The backtest over ``source`` (a :class:`~makerflow.backtest.inputs.TaggedSource`),
    writing part files under ``parts_dir``."""
    router = Router(config)
    streams = tuple(source.list_parts())
    flow = Dataflow(flow_id)
    items = op.input("input", flow, source)
    keyed = op.flat_map("route", items, router.route)
    out = op.stateful_batch("engine", keyed, lambda _resume: _EngineLogic(config, streams, router))
    op.output("parts", out, PartsSink(parts_dir, router.keys))
    return flow


def assemble(parts_dir: Path, out_dir: Path, markets: int) -> dict[str, int]:
    """Write ``<out_dir>/<name>.jsonl`` for every stream from the part files: by engine time,
    then market, then the order each engine emitted them. Returns the line counts."""
    counts: dict[str, int] = {}
    part_dirs = sorted((p for p in parts_dir.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    for name in STREAMS:
        lines: list[bytes] = []
        for d in part_dirs:
            f = d / f"{name}.tsv"
            if f.exists():
                lines.extend(f.read_bytes().splitlines())
        if markets > 1:
            lines.sort(key=_order)
        with (out_dir / f"{name}.jsonl").open("wb") as out:
            for line in lines:
                out.write(line.split(b"\t", 2)[2])
                out.write(b"\n")
        counts[name] = len(lines)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return counts


def _order(line: bytes) -> tuple[int, int]:
    now, idx, _ = line.split(b"\t", 2)
    return int(now), int(idx)
