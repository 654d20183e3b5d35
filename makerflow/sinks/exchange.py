"""The exchange sink: executes order intents with ccxt (async), never placing an order twice.

Each intent passes the pure fat-finger guards (:mod:`makerflow.operators.guards`) first; a
place is rounded with ccxt's ``price_to_precision`` / ``amount_to_precision`` and checked
against the market's minimum notional; then it is sent with its client order id. A network
failure (timeout, 5xx, 429) leaves the order's fate unknown, so before any re-send the sink
asks the venue for the order by client order id and only re-sends when the venue has none:
that is what makes retries idempotent. ccxt's error classes become rejected
:class:`~makerflow.schemas.events.OrderEvent` s with the reason.

:func:`execute_intents` is the Bytewax operator; the ccxt client lives on one asyncio loop in a
background thread per process (:class:`ExchangeRunner`), shared by the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bytewax.operators as op
import ccxt.async_support as ccxt
import msgspec
from bytewax.dataflow import Stream, operator

from makerflow import metrics
from makerflow.operators.guards import GuardLimits, OpenOrders, check_intent
from makerflow.schemas.config import Config
from makerflow.schemas.events import OrderEvent, OrderIntent, OrderStatus, Side

log = logging.getLogger(__name__)


class ExchangeSinkConfig(Config, frozen=True, kw_only=True):
    """Where and how intents are executed.

    ``url``: a local exchange (``http://127.0.0.1:PORT``, see :mod:`makerflow.exchange`);
    ``None`` uses ccxt's own URLs for ``exchange_id``. Credentials come from the environment
    variables named here or from the files named here (file wins), never from this config.
    """

    venue: str = "binance"
    exchange_id: str = "binance"
    url: str | None = None
    account: str = "main"
    dry_run: bool = False
    max_attempts: int = 4
    retry_backoff_s: float = 0.05
    timeout_ms: int = 5_000
    enable_rate_limit: bool = True
    rate_limit_ms: float | None = None
    """Override ccxt's request spacing (ms); ``None`` keeps the venue's default."""
    guards: GuardLimits = GuardLimits()
    api_key_env: str = "MAKERFLOW_EXCHANGE_API_KEY"
    secret_env: str = "MAKERFLOW_EXCHANGE_SECRET"
    api_key_file: str | None = None
    secret_file: str | None = None


@dataclass(frozen=True)
class Credentials:
    """An API key pair; its ``repr`` (and so every log line) masks both."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        shown = self.api_key[:4] + "…" if len(self.api_key) > 8 else "…"
        return f"Credentials(api_key={shown!r}, secret='***')"

    __str__ = __repr__

    @classmethod
    def load(cls, config: ExchangeSinkConfig, env: Mapping[str, str] | None = None) -> Credentials:
        e = os.environ if env is None else env

        def read(file: str | None, var: str) -> str:
            if file:
                return Path(file).read_text().strip()
            value = e.get(var, "")
            if not value:
                raise ValueError(
                    f"no exchange credential: set the environment variable {var} "
                    "or name a secret file in the exchange sink config"
                )
            return value

        return cls(
            read(config.api_key_file, config.api_key_env),
            read(config.secret_file, config.secret_env),
        )


RejectReason = Literal[
    "guard",
    "malformed",
    "min_notional",
    "insufficient_funds",
    "invalid_order",
    "unknown_order",
    "rate_limited",
    "exchange_unavailable",
    "network",
    "auth",
    "exchange_error",
]


def classify_error(exc: BaseException) -> tuple[RejectReason, bool]:
    """The reject reason class of a ccxt error, and whether a retry may help."""
    if isinstance(exc, ccxt.InsufficientFunds):
        return "insufficient_funds", False
    if isinstance(exc, ccxt.OrderNotFound):
        return "unknown_order", False
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.BadSymbol):
        return "invalid_order", False
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied):
        return "auth", False
    if isinstance(exc, ccxt.DDoSProtection):
        return "rate_limited", True
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        return "exchange_unavailable", True
    if isinstance(exc, ccxt.NetworkError | ccxt.OperationFailed):
        return "network", True
    return "exchange_error", False


_STATUS: dict[str, OrderStatus] = {
    "closed": "filled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "rejected": "rejected",
    "expired": "expired",
}


def order_event_from_ccxt(
    order: Mapping[str, Any],
    *,
    venue: str,
    account: str,
    symbol: str | None = None,
    fallback_ts: int = 0,
    client_order_id: str | None = None,
    reason: str = "",
) -> OrderEvent:
    """A ccxt unified order as an :class:`OrderEvent` (``open`` with fills is ``partial``)."""
    filled = float(order.get("filled") or 0.0)
    raw_status = order.get("status") or "open"
    status: OrderStatus = _STATUS.get(raw_status, "ack" if filled == 0 else "partial")
    stamp = order.get("lastUpdateTimestamp") or order.get("timestamp")
    side: Side = "sell" if order.get("side") == "sell" else "buy"
    price = order.get("price")
    return OrderEvent(
        ts=int(stamp) * 1_000_000 if stamp else fallback_ts,
        venue=venue,
        symbol=symbol or str(order.get("symbol")),
        account=account,
        client_order_id=client_order_id or str(order.get("clientOrderId") or ""),
        exchange_order_id=str(order["id"]) if order.get("id") is not None else None,
        status=status,
        side=side,
        price=float(price) if price else None,
        qty=float(order.get("amount") or 0.0),
        filled_qty=filled,
        reason=reason,
    )


@dataclass
class _Placed:
    side: Side
    price: float | None
    qty: float


class ExchangeExecutor:
    """Executes intents against one venue account with an async ccxt client. Async; every
    call must run on the loop the client was created on."""

    def __init__(
        self,
        config: ExchangeSinkConfig,
        client: Any | None = None,
        *,
        credentials: Credentials | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._client = client
        self._credentials = credentials
        self._sleep = sleep
        self._markets_loaded = False
        self._placed: OrderedDict[str, _Placed] = OrderedDict()
        self.sent = 0

    # --- the client -------------------------------------------------------------------

    async def client(self) -> Any:
        if self._client is None:
            self._client = make_ccxt_client(self.config, self._credentials)
        if not self._markets_loaded:
            await self._client.load_markets()
            self._markets_loaded = True
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

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
                reason, _ = classify_error(exc)
                return [self._reject(intent, reason, f"{type(exc).__name__}: {exc}")]
            except Exception as exc:
                # Whatever went wrong, one intent must not stop the flow: reject it, loudly.
                log.exception("executing %s %s failed", intent.action, intent.client_order_id)
                return [self._reject(intent, "exchange_error", f"{type(exc).__name__}: {exc}")]

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
        if self.config.dry_run:
            return self._dry_run(intent)
        if intent.action == "place":
            return await self._place(intent)
        if intent.action == "cancel":
            return await self._cancel(intent)
        return await self._cancel_all(intent)

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
        return self._reject(intent, kind, problem)

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

    async def _place(self, intent: OrderIntent) -> list[OrderEvent]:
        client = await self.client()
        cid = intent.client_order_id or ""
        assert intent.side is not None and intent.qty is not None
        try:
            market = client.market(intent.symbol)
            amount = float(client.amount_to_precision(intent.symbol, intent.qty))
            price = (
                float(client.price_to_precision(intent.symbol, intent.price))
                if intent.order_type == "limit" and intent.price is not None
                else None
            )
        except ccxt.BaseError as exc:
            return [self._reject(intent, "invalid_order", f"{type(exc).__name__}: {exc}")]
        if amount <= 0:
            return [self._reject(intent, "min_notional", f"quantity {intent.qty} rounds to 0")]
        min_cost = ((market.get("limits") or {}).get("cost") or {}).get("min")
        valuation = price if price is not None else intent.reference
        if min_cost and valuation is not None and amount * valuation < float(min_cost):
            return [
                self._reject(
                    intent,
                    "min_notional",
                    f"notional {amount * valuation:.8f} < minimum {min_cost}",
                )
            ]
        self._remember(cid, intent.side, price, amount)
        params: dict[str, Any] = {"clientOrderId": cid}
        if intent.order_type == "limit" and intent.post_only:
            params["postOnly"] = True
        last: BaseException | None = None
        for attempt in range(self.config.max_attempts):
            if attempt:
                # The previous send may have reached the venue: look before sending again.
                await self._sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
                try:
                    found = await client.fetch_order(None, intent.symbol, {"clientOrderId": cid})
                    log.info("order %s was placed by an earlier attempt; not re-sending", cid)
                    return [self._from_order(intent, found)]
                except ccxt.OrderNotFound:
                    pass
                except ccxt.BaseError as exc:
                    last = exc
                    if not classify_error(exc)[1]:
                        break
                    continue
            try:
                metrics.ORDERS_SENT.labels(venue=intent.venue, action="place").inc()
                self.sent += 1
                order = await client.create_order(
                    intent.symbol, intent.order_type, intent.side, amount, price, params
                )
                return [self._from_order(intent, order)]
            except ccxt.BaseError as exc:
                last = exc
                if "Duplicate order" in str(exc):
                    # An earlier attempt landed after all; report that order.
                    try:
                        found = await client.fetch_order(
                            None, intent.symbol, {"clientOrderId": cid}
                        )
                        return [self._from_order(intent, found)]
                    except ccxt.BaseError as exc2:
                        last = exc2
                if not classify_error(last)[1]:
                    break
                log.warning("place %s attempt %d failed: %s", cid, attempt + 1, type(exc).__name__)
        assert last is not None
        reason, _ = classify_error(last)
        return [self._reject(intent, reason, f"{type(last).__name__}: {last}")]

    async def _cancel(self, intent: OrderIntent) -> list[OrderEvent]:
        client = await self.client()
        cid = intent.client_order_id or ""
        last: BaseException | None = None
        for attempt in range(self.config.max_attempts):
            if attempt:
                await self._sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
            try:
                metrics.ORDERS_SENT.labels(venue=intent.venue, action="cancel").inc()
                self.sent += 1
                order = await client.cancel_order(None, intent.symbol, {"clientOrderId": cid})
                return [self._from_order(intent, order, status="canceled")]
            except ccxt.OrderNotFound as exc:
                # Already closed (filled, or canceled by an earlier attempt): report the truth.
                try:
                    found = await client.fetch_order(None, intent.symbol, {"clientOrderId": cid})
                    return [self._from_order(intent, found)]
                except ccxt.BaseError:
                    return [self._reject(intent, "unknown_order", f"{type(exc).__name__}: {exc}")]
            except ccxt.BaseError as exc:
                last = exc
                if not classify_error(exc)[1]:
                    break
        assert last is not None
        reason, _ = classify_error(last)
        detail = f"cancel_rejected: {reason}: {type(last).__name__}: {last}"
        metrics.ORDER_REJECTS.labels(venue=intent.venue, reason=reason).inc()
        log.warning("cancel of %s failed: %s", cid, detail)
        # A failed cancel leaves the order alive: report its state (as the venue says, or
        # as last known), never "rejected", which would tell the quoter it is gone.
        with contextlib.suppress(ccxt.BaseError):
            found = await client.fetch_order(None, intent.symbol, {"clientOrderId": cid})
            return [_replace(self._from_order(intent, found), reason=detail)]
        placed = self._placed.get(cid)
        return [
            OrderEvent(
                ts=intent.ts,
                venue=intent.venue,
                symbol=intent.symbol,
                account=intent.account,
                client_order_id=cid,
                status="ack",
                side=placed.side if placed else "buy",
                price=placed.price if placed else None,
                qty=placed.qty if placed else 0.0,
                reason=detail,
            )
        ]

    async def _cancel_all(self, intent: OrderIntent) -> list[OrderEvent]:
        client = await self.client()
        last: BaseException | None = None
        for attempt in range(self.config.max_attempts):
            if attempt:
                await self._sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
            try:
                metrics.ORDERS_SENT.labels(venue=intent.venue, action="cancel_all").inc()
                self.sent += 1
                orders = await client.cancel_all_orders(intent.symbol)
                return [self._from_order(intent, o, status="canceled") for o in orders]
            except ccxt.OrderNotFound:
                return []  # nothing was open
            except ccxt.BaseError as exc:
                last = exc
                if not classify_error(exc)[1]:
                    break
        assert last is not None
        reason, _ = classify_error(last)
        metrics.ORDER_REJECTS.labels(venue=intent.venue, reason=reason).inc()
        log.error("cancel_all on %s failed: %s: %s", intent.key, type(last).__name__, last)
        return []

    # --- events -----------------------------------------------------------------------

    def _remember(self, cid: str, side: Side, price: float | None, qty: float) -> None:
        self._placed[cid] = _Placed(side, price, qty)
        self._placed.move_to_end(cid)
        while len(self._placed) > 100_000:
            self._placed.popitem(last=False)

    def _from_order(
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
        return ev

    def _reject(self, intent: OrderIntent, kind: RejectReason, detail: str) -> OrderEvent:
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


def make_ccxt_client(config: ExchangeSinkConfig, credentials: Credentials | None = None) -> Any:
    """The async ccxt client the config names, with credentials from the environment or the
    secret files when none are given."""
    creds = credentials or Credentials.load(config)
    extra: dict[str, Any] = {
        "timeout": config.timeout_ms,
        "enableRateLimit": config.enable_rate_limit,
    }
    if config.rate_limit_ms is not None:
        extra["rateLimit"] = config.rate_limit_ms
    if config.url is not None:
        from makerflow.exchange.local import ccxt_client

        return ccxt_client(config.url, creds.api_key, creds.secret, **extra)
    cls = getattr(ccxt, config.exchange_id)
    return cls({"apiKey": creds.api_key, "secret": creds.secret, **extra})


class ExchangeRunner:
    """One asyncio loop in a daemon thread running an :class:`ExchangeExecutor`, so the
    synchronous Bytewax step can hand it batches and wait for the events."""

    def __init__(self, executor: ExchangeExecutor) -> None:
        self.executor = executor
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="exchange-sink", daemon=True
        )
        self._thread.start()

    def run(
        self, intents: list[OrderIntent], open_orders: Callable[[str], int] | None = None
    ) -> list[OrderEvent]:
        fut: Future[list[OrderEvent]] = asyncio.run_coroutine_threadsafe(
            self.executor.execute_many(intents, open_orders), self._loop
        )
        return fut.result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.executor.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class _LazyRunner:
    """One runner per worker thread, created on first use so building the flow opens
    nothing. Per worker, so a worker reaching the end of its input closes only its own
    connection while other workers (cluster_main threads) still trade."""

    def __init__(self, config: ExchangeSinkConfig, credentials: Credentials | None) -> None:
        self._config = config
        self._credentials = credentials
        self._runners: dict[int, ExchangeRunner] = {}
        self._lock = threading.Lock()

    def get(self) -> ExchangeRunner:
        me = threading.get_ident()
        with self._lock:
            runner = self._runners.get(me)
            if runner is None:
                creds = self._credentials
                if creds is None and not self._config.dry_run:
                    creds = Credentials.load(self._config)
                runner = ExchangeRunner(ExchangeExecutor(self._config, credentials=creds))
                self._runners[me] = runner
            return runner

    def close(self) -> None:
        with self._lock:
            runner = self._runners.pop(threading.get_ident(), None)
        if runner is not None:
            runner.close()


_Item = OrderIntent | OrderEvent


class _ExecuteLogic(op.StatefulBatchLogic[_Item, OrderEvent, tuple[str, ...]]):
    """Per market: the guards' open-order count, and the batch of intents to execute."""

    def __init__(self, step: str, lazy: _LazyRunner, resume: tuple[str, ...] | None) -> None:
        self.step = step
        self.lazy = lazy
        self.open = OpenOrders(resume or ())

    def on_batch(self, values: list[_Item]) -> tuple[Iterable[OrderEvent], bool]:
        metrics.EVENTS_IN.labels(step=self.step).inc(len(values))
        out: list[OrderEvent] = []
        pending: list[OrderIntent] = []

        def run_pending() -> None:
            if not pending:
                return
            events = self.lazy.get().run(list(pending), lambda _key: len(self.open))
            for ev in events:
                self.open.on_event(ev)
            out.extend(events)
            pending.clear()

        for v in values:
            if isinstance(v, OrderIntent):
                pending.append(v)
            else:
                run_pending()
                self.open.on_event(v)
        run_pending()
        metrics.EVENTS_OUT.labels(step=self.step).inc(len(out))
        return out, False

    def on_eof(self) -> tuple[Iterable[OrderEvent], bool]:
        # The input is finished for every key: release the connection (a later item, after
        # a resume, opens a new one).
        self.lazy.close()
        return (), False

    def snapshot(self) -> tuple[str, ...]:
        return self.open.snapshot()


@operator
def execute_intents(
    step_id: str,
    intents: Stream[OrderIntent],
    config: ExchangeSinkConfig,
    *,
    updates: Stream[OrderEvent] | None = None,
    credentials: Credentials | None = None,
) -> Stream[OrderEvent]:
    """Execute order intents on the exchange; emit the resulting order events (acks, fills
    known at once, cancels, and local or exchange rejects with their reason).

    Keyed by market, so each market's intents run in order on one worker. ``updates``
    (the private stream's order events) keeps the open-order guard exact when fills close
    orders; without it the count follows this step's own events.
    """
    lazy = _LazyRunner(config, credentials)
    merged: Stream[_Item] = (
        op.merge("merge_updates", intents, updates) if updates is not None else intents
    )
    keyed = op.key_on("key_market", merged, lambda x: x.key)
    out = op.stateful_batch(
        "execute",
        keyed,
        lambda resume: _ExecuteLogic(step_id, lazy, resume),
    )
    return op.key_rm("unkey", out)
