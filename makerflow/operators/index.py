"""The basket index: a fair price per asset from CEX and DEX venues, checked against an oracle.

Per asset, the index takes every venue's latest price (CEX mids from ticks, DEX pool prices),
drops what is stale in event time, invalid, or an outlier, and takes the liquidity-weighted
median of what is left; with fewer than ``min_venues`` left the asset has no price, and the
index says why. A basket is a sum of ``weight`` units of each asset (``1 BTC`` is the BTC
index; ``0.5 BTC + 10 ETH`` a basket), in the basket's quote currency.

The on-chain oracle (Chainlink) is a check, never an input: the same basket priced at the
oracles' answers is compared with the index, and a deviation over the threshold flags it.

Every :class:`IndexPrice` carries its constituents with the venues used (and their share of
the weight) and those excluded, each with its reason, so a trader can see why the number is
what it is.

:class:`~makerflow.operators.index_basket.BasketIndex` is the pure logic (no I/O, no clock:
``now`` is the latest event time the basket has seen; fair prices per asset are in
:mod:`~makerflow.operators.index_fair`, settings in :mod:`~makerflow.operators.index_config`);
:func:`index_op` is the Bytewax operator around it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.index_basket import BasketIndex, IndexSnapshot
from makerflow.operators.index_config import IndexConfig as IndexConfig
from makerflow.operators.index_fair import IndexInput, split_symbol
from makerflow.schemas.events import DexPrice, IndexPrice, OraclePrice, Tick

# --- routing and the Bytewax operator ---------------------------------------------------------


class BasketRouter:
    """Which baskets an event concerns: those holding its asset in an accepted quote."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        routes: dict[tuple[str, str], list[str]] = {}
        for b in config.baskets:
            for a in b.assets:
                for q in b.quotes:
                    routes.setdefault((a.asset, q), []).append(b.name)
        self._routes = {k: tuple(v) for k, v in routes.items()}

    def baskets_for(self, event: IndexInput) -> tuple[str, ...]:
        if isinstance(event, Tick):
            base, quote, derivative = split_symbol(event.symbol)
            if derivative and not self.config.include_derivatives:
                return ()
        else:
            base, quote = event.base, event.quote
        return self._routes.get((base, quote), ())


IndexState: TypeAlias = tuple[str, IndexSnapshot]
"""A basket's resume state: its name and its snapshot."""


class _IndexLogic(StatefulLogic[tuple[str, IndexInput], IndexPrice, IndexState]):
    """A basket's state in the dataflow. Values carry the basket's name because the builder
    only gets the resume state, and a basket's logic is built on its first event."""

    def __init__(self, step_id: str, config: IndexConfig, resume: IndexState | None) -> None:
        self.step_id = step_id
        self.config = config
        self.index: BasketIndex | None = None
        if resume is not None:
            self._start(resume[0], resume[1])
        self._out = metrics.EVENTS_OUT.labels(step=step_id)

    def _start(self, name: str, snapshot: IndexSnapshot | None) -> BasketIndex:
        basket = next(b for b in self.config.baskets if b.name == name)
        self.index = BasketIndex(basket, self.config, snapshot)
        self._deviation = metrics.INDEX_ORACLE_DEVIATION.labels(basket=name)
        return self.index

    def on_item(self, value: tuple[str, IndexInput]) -> tuple[Iterable[IndexPrice], bool]:
        name, event = value
        index = self.index or self._start(name, None)
        out = index.update(event)
        if out is None:
            return ((), StatefulLogic.RETAIN)
        self._out.inc()
        if out.oracle_deviation_bps is not None:
            self._deviation.set(out.oracle_deviation_bps)
        return ((out,), StatefulLogic.RETAIN)

    def snapshot(self) -> IndexState:
        assert self.index is not None  # a key exists only once an event has arrived
        return (self.index.basket.name, self.index.snapshot())


@operator
def index_op(
    step_id: str,
    ticks: Stream[Tick],
    dex: Stream[DexPrice | OraclePrice],
    config: IndexConfig,
) -> Stream[IndexPrice]:
    """Basket index prices from CEX ticks and DEX prices, checked against oracle answers.

    Each event goes to every basket holding its asset (in an accepted quote); the state is
    keyed by basket, so baskets spread across workers. One :class:`IndexPrice` per event
    that changes a basket; events no basket holds are not for the index and pass by.
    """
    router = BasketRouter(config)
    counted_in = metrics.EVENTS_IN.labels(step=step_id)

    def route(event: IndexInput) -> list[tuple[str, tuple[str, IndexInput]]]:
        counted_in.inc()
        return [(name, (name, event)) for name in router.baskets_for(event)]

    merged: Stream[IndexInput] = op.merge("merge", ticks, dex)
    keyed = op.flat_map("route", merged, route)
    priced = op.stateful("index", keyed, lambda resume: _IndexLogic(step_id, config, resume))
    return op.key_rm("unkey", priced)
