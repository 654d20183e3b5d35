"""The exchange's list of our open orders, polled through ccxt's ``fetch_open_orders``.

One partition per ``venue:account``. Polling runs on an asyncio loop behind
:func:`bytewax.inputs.batch_async`, so ``next_batch`` never blocks the worker for longer than
a short timeout, however slow the exchange is. A failed poll is logged and retried on the next
interval: a missing listing only delays open-order reconciliation, it never stops the flow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition, batch_async

from makerflow.operators.recon_orders import ExchangeOpenOrders
from makerflow.venue import exchange_order_from_ccxt

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Any]
"""Returns a ccxt async client (``ccxt.async_support.<exchange>``), authenticated."""


async def poll_open_orders(
    make_client: ClientFactory,
    *,
    venue: str,
    account: str,
    symbols: Sequence[str] | None,
    interval_s: float,
    polls: int | None = None,
) -> AsyncIterator[ExchangeOpenOrders]:
    """Every ``interval_s``, the exchange's open orders (of ``symbols``, or all of them).

    ``ts`` is the wall clock when the request was sent: the listing is at least as new as
    that, which is what the in-flight grace of the comparison needs. ``polls`` bounds the
    number of listings (replays and tests); ``None`` polls forever.
    """
    client = make_client()
    n = 0
    try:
        while polls is None or n < polls:
            sent = time.time_ns()
            try:
                if symbols:
                    raw: list[Any] = []
                    for s in symbols:
                        raw.extend(await client.fetch_open_orders(s))
                else:
                    raw = list(await client.fetch_open_orders())
                orders = []
                for o in raw:
                    try:
                        orders.append(exchange_order_from_ccxt(o))
                    except ValueError as exc:
                        log.warning("%s:%s open orders: skipped %s", venue, account, exc)
                yield ExchangeOpenOrders(
                    venue=venue,
                    account=account,
                    ts=sent,
                    orders=tuple(orders),
                    symbols=tuple(symbols) if symbols else None,
                )
                n += 1
            except Exception as exc:  # ccxt raises many kinds; every one means "try again"
                log.warning("%s:%s fetch_open_orders failed, retrying: %s", venue, account, exc)
            if polls is None or n < polls:
                await asyncio.sleep(interval_s)
    finally:
        await client.close()


class _Partition(StatefulSourcePartition[ExchangeOpenOrders, None]):
    def __init__(self, listings: AsyncIterator[ExchangeOpenOrders]) -> None:
        # A loop of its own, so the poller's ccxt client lives and dies with the partition.
        self._loop = asyncio.new_event_loop()
        self._batches: Iterator[list[ExchangeOpenOrders]] = batch_async(
            listings, timedelta(milliseconds=100), 16, loop=self._loop
        )

    def next_batch(self) -> list[ExchangeOpenOrders]:
        return next(self._batches)

    def snapshot(self) -> None:
        # A listing is a fresh look at the exchange: nothing to resume from.
        return None

    def close(self) -> None:
        self._loop.close()


class OpenOrdersSource(FixedPartitionedSource[ExchangeOpenOrders, None]):
    """Polls ``fetch_open_orders`` for one ``venue:account``."""

    def __init__(
        self,
        make_client: ClientFactory,
        *,
        venue: str,
        account: str = "main",
        symbols: Sequence[str] | None = None,
        interval_s: float = 30.0,
        polls: int | None = None,
    ) -> None:
        self.make_client = make_client
        self.venue = venue
        self.account = account
        self.symbols = tuple(symbols) if symbols else None
        self.interval_s = interval_s
        self.polls = polls

    def list_parts(self) -> list[str]:
        return [f"{self.venue}:{self.account}"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSourcePartition[ExchangeOpenOrders, None]:
        agen = poll_open_orders(
            self.make_client,
            venue=self.venue,
            account=self.account,
            symbols=self.symbols,
            interval_s=self.interval_s,
            polls=self.polls,
        )
        return _Partition(agen)
