"""Executes order intents against one venue account with an async ccxt client, never placing
an order twice.

Each intent passes the pure fat-finger guards (:mod:`makerflow.operators.guards`) first; a
place from before this run is looked up by client id first (the run before may have sent
it); a place older than its time-to-live is dropped (``expired_intent``); a place is rounded with
ccxt's ``price_to_precision`` / ``amount_to_precision`` and checked against the market's
minimum notional; then it is sent with its client order id.

What a failure means comes from ccxt's exception class (:mod:`makerflow.venue.errors`):

- refused (429, a 4xx) or never sent (connection refused): retried with exponential backoff
  and jitter, never sooner than the venue's ``Retry-After``;
- maybe processed (timeout, 5xx, dropped connection): the order may be live. It is never
  re-sent: it is looked up by client id, and while the venue does not know it, it is
  reported ``unknown`` and kept in :attr:`ExchangeExecutor.unknown`, which
  :meth:`ExchangeExecutor.resolve_unknown` keeps looking up until the venue says what
  happened; once the venue's receive window has passed, an order it does not know can no
  longer land, and it is reported ``rejected`` (``not_placed``).

Every venue call is bounded: a per-market and a global limit on requests in flight, and
ccxt's per-request timeout. Places (and the look-up of one from before this run) are
:mod:`makerflow.sinks.exchange_place`; cancels and cancel-alls
:mod:`makerflow.sinks.exchange_cancel`; the one retry loop they share
:mod:`makerflow.sinks.exchange_retry`; lost places :mod:`makerflow.sinks.exchange_lost`;
mass status :mod:`makerflow.sinks.venue_status`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt
import msgspec

from makerflow import metrics
from makerflow.operators.guards import check_intent
from makerflow.schemas.events import (
    OrderEvent,
    OrderIntent,
    OrderStatus,
    Side,
)
from makerflow.sinks.exchange_cancel import Flatten, cancel_all, cancel_order
from makerflow.sinks.exchange_config import ExchangeSinkConfig
from makerflow.sinks.exchange_lost import LostPlaces, Unknown
from makerflow.sinks.exchange_place import look_up_replayed, place_order
from makerflow.sinks.venue_status import VenueStatus, fetch_venue_status
from makerflow.venue import (
    Credentials,
    RejectReason,
    classify_error,
    make_client,
    order_event_from_ccxt,
)

log = logging.getLogger(__name__)


@dataclass
class _Placed:
    side: Side
    price: float | None
    qty: float


class ExchangeExecutor:
    """Executes intents against one venue account. Async; every call must run on the loop
    the client was created on. ``clock`` (ns, wall) and ``rng`` are injected so tests are
    deterministic; ``sleep`` is the retry wait."""

    def __init__(
        self,
        config: ExchangeSinkConfig,
        client: Any | None = None,
        *,
        credentials: Credentials | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        flatten: Flatten | None = None,
        started_ns: int | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._credentials = credentials
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random(config.retry_seed)
        self._flatten = flatten
        self._markets_loaded = False
        self._placed: OrderedDict[str, _Placed] = OrderedDict()
        self._cids: OrderedDict[str, str] = OrderedDict()
        """exchange order id -> client order id, learned from every order seen."""
        self.lost = LostPlaces(config)
        self._global: asyncio.Semaphore | None = None
        self._per_market: dict[str, asyncio.Semaphore] = {}
        self.sent = 0
        self.started_ns = clock() if started_ns is None else started_ns
        """When this run started (the flow's build, or now): places with an older event time
        come from a run before (see ``_place``)."""
        self.delays: list[float] = []
        """Every retry wait, in seconds (the benchmark and tests read them)."""

    # --- the client -------------------------------------------------------------------

    @property
    def unknown(self) -> dict[str, Unknown]:
        """Places whose answer was lost, by client id, until the venue says."""
        return self.lost.orders

    async def client(self) -> Any:
        if self._client is None:
            creds = self._credentials or Credentials.load(self.config)
            self._client = make_client(self.config.client_spec(), creds)
        if not self._markets_loaded:
            await self._client.load_markets()
            self._markets_loaded = True
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def call(self, key: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One venue request, within the in-flight limits. Its time limit is ccxt's own
        ``timeout`` (connect, read and total, per request); no outer limit, since that would
        also cut requests waiting in ccxt's rate-limit queue, which were never sent, and make
        them look lost."""
        cfg = self.config
        if self._global is None:
            self._global = asyncio.Semaphore(cfg.max_in_flight)
        market = self._per_market.get(key)
        if market is None:
            market = self._per_market[key] = asyncio.Semaphore(cfg.max_in_flight_per_market)
        gauge = metrics.ORDERS_IN_FLIGHT.labels(venue=cfg.venue)
        async with market, self._global:
            gauge.inc()
            try:
                return await fn(*args)
            finally:
                gauge.dec()

    # --- intents ----------------------------------------------------------------------

    async def execute_many(
        self, intents: Iterable[OrderIntent], open_orders: Callable[[str], int] | None = None
    ) -> list[OrderEvent]:
        """Execute intents of one market in order, independent ones concurrently: a wave
        ends before a cancel-all and before a second intent for the same client order id."""
        out: list[OrderEvent] = []
        # A wave holds intents to send, and guard rejects in their place, so the events come
        # out in the order of the intents.
        wave: list[OrderIntent | OrderEvent] = []
        ids: set[str] = set()
        # Places admitted by this call count towards the open-order guard at once, so a
        # concurrent wave can not overshoot the limit.
        admitted: dict[str, int] = {}

        def count(key: str) -> int:
            return (open_orders(key) if open_orders is not None else 0) + admitted.get(key, 0)

        async def settled(ev: OrderEvent) -> list[OrderEvent]:
            return [ev]

        async def safely(intent: OrderIntent) -> list[OrderEvent]:
            try:
                return await self.execute(intent, guarded=True)
            except ccxt.BaseError as exc:  # e.g. markets could not be loaded
                reason = classify_error(exc).reason
                return [self.reject(intent, reason, f"{type(exc).__name__}: {exc}")]
            except Exception as exc:
                # Whatever went wrong, one intent must not stop the flow: reject it, loudly.
                log.exception("executing %s %s failed", intent.action, intent.client_order_id)
                return [self.reject(intent, "exchange_error", f"{type(exc).__name__}: {exc}")]

        async def flush() -> None:
            results = await asyncio.gather(
                *(settled(i) if isinstance(i, OrderEvent) else safely(i) for i in wave)
            )
            for r in results:
                out.extend(r)
            wave.clear()
            ids.clear()

        for intent in intents:
            problem = self._misrouted(intent) or check_intent(
                intent, self.config.guards, count(intent.key)
            )
            if problem is not None:
                wave.append(self._guard_reject(intent, problem))
                continue
            if intent.action == "place":
                admitted[intent.key] = admitted.get(intent.key, 0) + 1
            cid = intent.client_order_id or ""
            if intent.action == "cancel_all" or cid in ids:
                await flush()
            wave.append(intent)
            ids.add(cid)
            if intent.action == "cancel_all":
                await flush()
        await flush()
        return out

    async def execute(
        self,
        intent: OrderIntent,
        open_orders: Callable[[str], int] | None = None,
        *,
        guarded: bool = False,
    ) -> list[OrderEvent]:
        """Execute one intent. ``open_orders(market_key)`` feeds the open-order guard;
        ``guarded`` says the caller already ran the guards."""
        if not guarded:
            n_open = open_orders(intent.key) if open_orders is not None else 0
            problem = self._misrouted(intent) or check_intent(intent, self.config.guards, n_open)
            if problem is not None:
                return [self._guard_reject(intent, problem)]
        if intent.action == "place":
            if self.from_before(intent) and not self.config.dry_run:
                # The run before may have placed it and seen it close: the venue's word
                # first, then the time-to-live, then (never seen, still young) the send.
                answer = await self._look_up_replayed(intent)
                if answer is not None:
                    return answer
            expired = self._expired(intent)
            if expired is not None:
                return [expired]
        if self.config.dry_run:
            return self._dry_run(intent)
        if intent.action == "place":
            return await self._place(intent)
        if intent.action == "cancel":
            return await self.cancel(intent)
        return await self._cancel_all(intent)

    def from_before(self, intent: OrderIntent) -> bool:
        """A place made before this run started (an intents topic re-read after a restart,
        an epoch replayed after a crash): the run before may have sent it."""
        return self.config.look_up_replays and intent.ts < self.started_ns

    def _expired(self, intent: OrderIntent) -> OrderEvent | None:
        ttl = self.config.intent_ttl_ms
        if ttl is None:
            return None
        age_ms = (self._clock() - intent.ts) / 1e6
        if age_ms <= ttl:
            return None
        return self.reject(
            intent,
            "expired_intent",
            f"intent is {age_ms:.0f} ms old, older than its time-to-live of {ttl} ms",
        )

    def _misrouted(self, intent: OrderIntent) -> str | None:
        cfg = self.config
        if intent.venue != cfg.venue or intent.account != cfg.account:
            return (
                f"malformed: intent for {intent.venue}/{intent.account} reached the sink of "
                f"{cfg.venue}/{cfg.account}"
            )
        return None

    def _guard_reject(self, intent: OrderIntent, problem: str) -> OrderEvent:
        kind: RejectReason = "malformed" if problem.startswith("malformed") else "guard"
        return self.reject(intent, kind, problem)

    def _dry_run(self, intent: OrderIntent) -> list[OrderEvent]:
        if intent.action == "cancel_all":
            return []
        placed = self._placed.get(intent.client_order_id or "")
        side = intent.side or (placed.side if placed else "buy")
        status: OrderStatus = "ack" if intent.action == "place" else "canceled"
        if intent.action == "place":
            self._remember(intent.client_order_id or "", side, intent.price, intent.qty or 0.0)
        return [
            OrderEvent(
                ts=intent.ts,
                venue=intent.venue,
                symbol=intent.symbol,
                account=intent.account,
                client_order_id=intent.client_order_id or "",
                status=status,
                side=side,
                price=intent.price if placed is None else placed.price,
                qty=intent.qty or (placed.qty if placed else 0.0),
                reason="dry_run",
            )
        ]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, never shorter than the venue's Retry-After."""
        cfg = self.config
        base = min(cfg.retry_backoff_s * 2 ** (attempt - 1), cfg.retry_backoff_max_s)
        if retry_after is not None:
            base = max(base, retry_after)
        delay = base * (1.0 + cfg.retry_jitter * self._rng.random())
        self.delays.append(delay)
        return delay

    async def lookup(self, key: str, symbol: str, cid: str) -> tuple[Any, BaseException | None]:
        """The venue's order with client id ``cid``: (order, None), (None, None) when the
        venue has none, (None, error) when it could not say."""
        client = await self.client()
        try:
            order = await self.call(key, client.fetch_order, None, symbol, {"clientOrderId": cid})
        except ccxt.OrderNotFound:
            return None, None
        except ccxt.BaseError as exc:
            return None, exc
        return order, None

    async def _look_up_replayed(self, intent: OrderIntent) -> list[OrderEvent] | None:
        return await look_up_replayed(self, intent)

    async def _place(self, intent: OrderIntent) -> list[OrderEvent]:
        return await place_order(self, intent)

    def remember(self, cid: str, side: Side, price: float | None, qty: float) -> None:
        """A place this executor is sending (its side, price and quantity)."""
        self._remember(cid, side, price, qty)

    def sent_before(self, cid: str) -> bool:
        """Sent by this executor (and not known to have failed), or its answer lost."""
        return cid in self._placed or cid in self.unknown

    async def resolve_unknown(self) -> list[OrderEvent]:
        """Look up every unknown order that is due (see :class:`LostPlaces`)."""
        return await self.lost.resolve(self)

    async def cancel(self, intent: OrderIntent) -> list[OrderEvent]:
        return await cancel_order(self, intent)

    async def _cancel_all(self, intent: OrderIntent) -> list[OrderEvent]:
        return await cancel_all(self, intent, self._flatten)

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def wait_to_retry(self, attempt: int, retry_after: float | None) -> None:
        await self._sleep(self._delay(attempt, retry_after))

    def placed(self, cid: str) -> tuple[Side, float | None, float] | None:
        """Side, price and quantity of a place this executor sent."""
        p = self._placed.get(cid)
        return (p.side, p.price, p.qty) if p is not None else None

    # --- events -----------------------------------------------------------------------

    def _remember(self, cid: str, side: Side, price: float | None, qty: float) -> None:
        self._placed[cid] = _Placed(side, price, qty)
        self._placed.move_to_end(cid)
        while len(self._placed) > 100_000:
            self._placed.popitem(last=False)

    def now(self) -> int:
        """The wall clock (ns) this executor reads (injected)."""
        return self._clock()

    def forget(self, cid: str) -> None:
        """A place that never landed: its client id may be sent again."""
        self._placed.pop(cid, None)

    def client_id_of(self, exchange_order_id: str) -> str | None:
        return self._cids.get(exchange_order_id)

    async def venue_status(self, symbol: str) -> VenueStatus:
        """Mass status of one market (see :func:`fetch_venue_status`)."""
        return await fetch_venue_status(self, symbol)

    def learn(self, ev: OrderEvent) -> None:
        if ev.exchange_order_id is not None and ev.client_order_id:
            self._cids[ev.exchange_order_id] = ev.client_order_id
            while len(self._cids) > 100_000:
                self._cids.popitem(last=False)

    def from_order(
        self, intent: OrderIntent, order: Mapping[str, Any], status: OrderStatus | None = None
    ) -> OrderEvent:
        ev = order_event_from_ccxt(
            order,
            venue=intent.venue,
            account=intent.account,
            symbol=intent.symbol,
            fallback_ts=intent.ts,
            # A cancel's answer names the cancel request in clientOrderId (Binance), so the
            # intent's id, or the original id the venue echoes, is the order's.
            client_order_id=(
                intent.client_order_id
                or (order.get("info") or {}).get("origClientOrderId")
                or order.get("clientOrderId")
            ),
            reason=intent.reason,
        )
        placed = self._placed.get(ev.client_order_id)
        if placed is not None and (ev.qty == 0 or ev.price is None):
            ev = _replace(ev, qty=ev.qty or placed.qty, price=ev.price or placed.price)
        if status is not None and ev.status not in ("filled",):
            ev = _replace(ev, status=status)
        self.learn(ev)
        self.unknown.pop(ev.client_order_id, None)
        return ev

    def reject(self, intent: OrderIntent, kind: RejectReason, detail: str) -> OrderEvent:
        metrics.ORDER_REJECTS.labels(venue=intent.venue, reason=kind).inc()
        log.info("rejected %s %s: %s", intent.action, intent.client_order_id, detail)
        placed = self._placed.get(intent.client_order_id or "")
        return OrderEvent(
            ts=intent.ts,
            venue=intent.venue,
            symbol=intent.symbol,
            account=intent.account,
            client_order_id=intent.client_order_id or "",
            status="rejected",
            side=intent.side or (placed.side if placed else "buy"),
            price=intent.price,
            qty=intent.qty if intent.qty is not None and math.isfinite(intent.qty) else 0.0,
            reason=f"{kind}: {detail}" if not detail.startswith(kind) else detail,
        )


def _replace(ev: OrderEvent, **changes: Any) -> OrderEvent:
    return msgspec.structs.replace(ev, **changes)
