"""What a ccxt error means for an order: a reject reason, whether a retry may help, and —
for a request that writes (place, cancel) — whether the venue may have acted on it.

Everything here reads ccxt's exception classes (and the exception ccxt chained from), never
the message text: messages differ between venues and change between versions.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import ccxt.async_support as ccxt

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
    "expired_intent",
    "not_placed",
]

Outcome = Literal["refused", "maybe_processed", "not_sent"]
"""For a write request that failed: ``refused`` (the venue answered and did not act: a 4xx,
a 429), ``maybe_processed`` (no answer, or a 5xx: the venue may have acted — Binance
documents 5xx as "execution status unknown"), ``not_sent`` (the connection never opened)."""


_RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)


@dataclass(frozen=True)
class ErrorClass:
    reason: RejectReason
    retryable: bool
    outcome: Outcome


def classify_error(exc: BaseException) -> ErrorClass:
    """The class of a ccxt error, checked most specific first (ccxt's hierarchy nests:
    ``DDoSProtection`` and ``RateLimitExceeded`` are both ``NetworkError`` s)."""
    if isinstance(exc, ccxt.InsufficientFunds):
        return ErrorClass("insufficient_funds", False, "refused")
    if isinstance(exc, ccxt.OrderNotFound):
        return ErrorClass("unknown_order", False, "refused")
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.BadSymbol):
        return ErrorClass("invalid_order", False, "refused")
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied):
        return ErrorClass("auth", False, "refused")
    if isinstance(exc, _RATE_LIMITED):
        # 429 / 418 (DDoSProtection), Binance's -1003 / -1015 (RateLimitExceeded): the venue
        # refused the request before acting on it.
        return ErrorClass("rate_limited", True, "refused")
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        # ccxt raises this for a refused connection (chained from aiohttp's connector
        # error: nothing was sent) and for a 503 or a dropped connection (maybe acted on).
        sent = not isinstance(exc.__cause__, aiohttp.ClientConnectorError)
        return ErrorClass("exchange_unavailable", True, "maybe_processed" if sent else "not_sent")
    if isinstance(exc, ccxt.NetworkError | ccxt.OperationFailed):
        return ErrorClass("network", True, "maybe_processed")
    return ErrorClass("exchange_error", False, "refused")


def may_be_duplicate_id(exc: BaseException) -> bool:
    """Whether a refused place may mean "an order with this client id exists already".

    ccxt has a class for it (``DuplicateOrderId``), but not every venue maps to it: Binance's
    "Duplicate order sent." is code -2010 (NEW_ORDER_REJECTED), which ccxt maps to a plain
    ``InvalidOrder``. So a plain ``InvalidOrder`` (not one of its specific subclasses) is
    resolved by looking the client id up, never by reading the message.
    """
    if isinstance(exc, ccxt.DuplicateOrderId):
        return True
    return type(exc) is ccxt.InvalidOrder


def retry_after_s(client: Any, exc: BaseException, *, now: float | None = None) -> float | None:
    """The venue's ``Retry-After`` for a 429/418, in seconds, or ``None``.

    ccxt keeps the last response's headers on the client (``last_response_headers``, set
    before it raises); the exception carries none. Read it right where the error is caught:
    between ccxt setting it and raising, only the release of an already-read response lies,
    so another request's answer does not overwrite it first in practice; at worst a wrong
    value only changes how long the retry waits. Seconds or an HTTP date (RFC 9110).
    """
    if not isinstance(exc, _RATE_LIMITED):
        return None
    headers: Mapping[str, Any] | None = getattr(client, "last_response_headers", None)
    if not headers:
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
