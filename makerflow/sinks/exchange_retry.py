"""The one retry loop of the exchange sink: every request that writes (a place, a cancel, a
cancel-all) goes through :func:`retrying`.

Each attempt is counted (``ORDERS_SENT`` by action, :attr:`ExchangeExecutor.sent`). A failed
attempt is retried while ccxt's class says a retry may help (:func:`makerflow.venue.
classify_error`: a 429/418, a 4xx never is; a connection that never opened), after
:meth:`ExchangeExecutor.wait_to_retry`: exponential backoff with seeded jitter, never sooner
than the venue's ``Retry-After``. The ``Retry-After`` is read as soon as the error is caught,
before anything else asks the venue (the client keeps only the last response's headers).

What differs between the requests is passed in, not copied:

- ``on_error`` answers an error before it counts as a refusal, or returns ``None`` to let
  the loop decide. A place answers a lost answer (maybe processed: looked up, never re-sent)
  and a duplicate client id that is ours (looked up: ccxt's class, never the message); a
  cancel answers ``OrderNotFound`` with the venue's word on the order; a cancel-all answers
  it with "nothing was open".
- ``max_retry_after_s``: a place gives up when the venue asks it to wait longer (its quote
  would be stale by then); a cancel passes ``None`` and waits out even a ban, since it is the
  only way to take the order off the venue.

When every attempt failed, or one that cannot help, the caller gets :class:`GaveUp` with the
last error and reports it its own way (a place is rejected, a failed cancel reports the order
as the venue still holds it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import ccxt.async_support as ccxt

from makerflow import metrics
from makerflow.schemas.events import OrderIntent
from makerflow.venue import ErrorClass, classify_error, retry_after_s

if TYPE_CHECKING:
    from makerflow.sinks.exchange_executor import ExchangeExecutor

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class GaveUp:
    """Every attempt was refused or never left (or one failed in a way a retry cannot help):
    the venue acted on none of them."""

    error: ccxt.BaseError

    @property
    def kind(self) -> ErrorClass:
        return classify_error(self.error)

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


async def retrying(
    ex: ExchangeExecutor,
    intent: OrderIntent,
    send: Callable[[], Awaitable[T]],
    on_error: Callable[[ccxt.BaseError], Awaitable[T | None]] | None = None,
    *,
    action: str,
    max_retry_after_s: float | None = None,
) -> T | GaveUp:
    """``send()`` until it answers, ``on_error`` answers for it, or retrying cannot help.
    ``action`` labels the sent-requests metric (``place``, ``cancel``, ``cancel_all``)."""
    client = await ex.client()
    last: ccxt.BaseError | None = None
    retry_after: float | None = None
    for attempt in range(ex.config.max_attempts):
        if attempt:
            await ex.wait_to_retry(attempt, retry_after)
        metrics.ORDERS_SENT.labels(venue=intent.venue, action=action).inc()
        ex.sent += 1
        try:
            return await send()
        except ccxt.BaseError as exc:
            last = exc
            retry_after = retry_after_s(client, exc)
            if on_error is not None:
                answer = await on_error(exc)
                if answer is not None:
                    return answer
            if not classify_error(exc).retryable:
                break
            if (
                retry_after is not None
                and max_retry_after_s is not None
                and retry_after > max_retry_after_s
            ):
                break
            log.warning(
                "%s %s attempt %d failed: %s",
                action,
                intent.client_order_id or intent.key,
                attempt + 1,
                type(exc).__name__,
            )
    assert last is not None, "max_attempts must be at least 1"
    return GaveUp(last)
