"""The exchange sink: executes order intents with ccxt (async), never placing an order twice,
never stalling the worker, and checking itself against the venue.

:func:`execute_intents` is the Bytewax operator. Per market it keeps the one order state
(:class:`~makerflow.operators.order_state.OrderState`), fed with the intents it executes,
the events they produce and the private stream's updates; the fat-finger guards read it. It
hands intents to an :class:`~makerflow.sinks.exchange_runner.ExchangeRunner` (the ccxt client
on an asyncio loop in a background thread, one per worker) and emits results as they finish:
it never waits on the venue, so a slow venue delays only its own market's intents.

At start (every configured market at once, see :mod:`makerflow.sinks.exchange_start`) and
then periodically it reconciles with the venue (:mod:`makerflow.operators.mass_status`):
orphans are cancelled or adopted, orders the state believes live that the venue does not
list are looked up, fills never seen are emitted. Nothing is sent before the start's
reconciliation is in, and intents from before this run are sorted against it first
(:mod:`makerflow.operators.replayed_intents`), so a restart, after kill -9 or not, never
places an order twice nor executes a stale place.

The per-market step is :mod:`makerflow.sinks.exchange_step`; the executor itself (retries,
lost answers, time-to-live) :mod:`makerflow.sinks.exchange_executor`; the venue layer
:mod:`makerflow.venue`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    Fill,
    OrderEvent,
    OrderIntent,
)
from makerflow.schemas.markers import CaughtUp
from makerflow.sinks.exchange_config import ExchangeSinkConfig
from makerflow.sinks.exchange_executor import ExchangeExecutor, Flatten
from makerflow.sinks.exchange_runner import ExchangeRunner
from makerflow.sinks.exchange_start import MarketStarts
from makerflow.sinks.exchange_step import BatchLogic, ExecuteLogic, LazyRunner
from makerflow.venue import Credentials, classify_error, make_client, order_event_from_ccxt

__all__ = [
    "Credentials",
    "ExchangeExecutor",
    "ExchangeRunner",
    "ExchangeSinkConfig",
    "Executions",
    "classify_error",
    "execute_intents",
    "make_ccxt_client",
    "order_event_from_ccxt",
]

log = logging.getLogger(__name__)


def make_ccxt_client(config: ExchangeSinkConfig, credentials: Credentials | None = None) -> Any:
    """The async ccxt client the config names (see :func:`makerflow.venue.make_client`)."""
    return make_client(config.client_spec(), credentials or Credentials.load(config))


@dataclass(frozen=True)
class Executions:
    """What execution produced: order events (acks, fills known at once, cancels, unknown
    outcomes and their resolutions, local and venue rejects with their reason, and the
    venue's word on orders the sweep listed), fills the sweep found that were never seen,
    the sweep's balances, and alerts (orphans)."""

    orders: Stream[OrderEvent]
    fills: Stream[Fill]
    balances: Stream[BalanceSnapshot]
    alerts: Stream[Alert]


@operator
def execute_intents(
    step_id: str,
    intents: Stream[OrderIntent | CaughtUp],
    config: ExchangeSinkConfig,
    *,
    updates: Stream[OrderEvent] | None = None,
    fill_updates: Stream[Fill] | None = None,
    credentials: Credentials | None = None,
    clock: Callable[[], int] = time.time_ns,
    flatten: Flatten | None = None,
    markets: tuple[str, ...] = (),
    marked: bool = False,
) -> Executions:
    """Execute order intents on the exchange; see the module docstring and
    :class:`Executions`.

    Keyed by market, so each market's intents run in order on one worker. ``updates`` and
    ``fill_updates`` (the private stream's order events and fills) keep the order state
    exact when the venue fills or closes orders; without them it follows this step's own
    events and the sweeps. ``clock`` (the wall clock, ns; Bytewax wakes the step on the real
    one) is read for intents' time-to-live, sweeps and harvest timers. ``flatten`` replaces
    the confirmed cancel-all used for ``cancel_all`` intents (the kill switch's
    :func:`~makerflow.sinks.flatten.flatten`, by default). ``markets`` (``venue:symbol``)
    start at once, with their mass status, whether or not an item of theirs arrives.
    ``marked``: ``intents`` carry their topic's :class:`~makerflow.schemas.markers.CaughtUp`
    markers for ``markets`` (one per partition and market, read with ``caught_up_once`` and
    ``markets`` as ``mark_keys``); their start judges the venue's listing once every
    partition is read (any other market's, without markers, after a pause).
    """
    lazy = LazyRunner(config, credentials, clock, flatten)
    marked_markets = frozenset(markets if marked else ())
    merged: Stream[Any] = intents
    if updates is not None:
        merged = op.merge("merge_updates", merged, updates)
    if fill_updates is not None:
        merged = op.merge("merge_fills", merged, fill_updates)
    if markets:
        starts = op.input("market_starts", intents.flow(), MarketStarts(markets))
        merged = op.merge("merge_starts", merged, starts)
    keyed = op.key_on("key_market", merged, lambda x: x.key)
    out = op.stateful_batch(
        "execute",
        keyed,
        lambda resume: BatchLogic(
            ExecuteLogic(step_id, config, lazy, clock, resume, marked_markets)
        ),
    )
    values = op.key_rm("unkey", out)
    orders_b = op.branch("orders", values, lambda e: isinstance(e, OrderEvent))
    fills_b = op.branch("fills", orders_b.falses, lambda e: isinstance(e, Fill))
    bal_b = op.branch("balances", fills_b.falses, lambda e: isinstance(e, BalanceSnapshot))
    return Executions(
        orders=orders_b.trues,  # type: ignore[arg-type]
        fills=fills_b.trues,  # type: ignore[arg-type]
        balances=bal_b.trues,  # type: ignore[arg-type]
        alerts=bal_b.falses,  # type: ignore[arg-type]
    )
