"""The venue layer's reading of ccxt errors: classes, never messages; Retry-After from the
headers ccxt keeps on the client."""

from __future__ import annotations

import email.utils

import aiohttp
import ccxt.async_support as ccxt
import pytest

from makerflow.venue import classify_error, may_be_duplicate_id, retry_after_s


def chained(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as e:
        return e


@pytest.mark.parametrize(
    ("exc", "reason", "retryable", "outcome"),
    [
        (ccxt.InsufficientFunds("x"), "insufficient_funds", False, "refused"),
        (ccxt.OrderNotFound("x"), "unknown_order", False, "refused"),
        (ccxt.OrderImmediatelyFillable("x"), "invalid_order", False, "refused"),
        (ccxt.InvalidOrder("x"), "invalid_order", False, "refused"),
        (ccxt.AuthenticationError("x"), "auth", False, "refused"),
        (ccxt.RateLimitExceeded("x"), "rate_limited", True, "refused"),
        (ccxt.DDoSProtection("x"), "rate_limited", True, "refused"),
        (ccxt.RequestTimeout("x"), "network", True, "maybe_processed"),
        (ccxt.ExchangeNotAvailable("503"), "exchange_unavailable", True, "maybe_processed"),
        (ccxt.ExchangeError("x"), "exchange_error", False, "refused"),
    ],
)
def test_classes_map_to_reasons_retries_and_outcomes(exc, reason, retryable, outcome):
    c = classify_error(exc)
    assert (c.reason, c.retryable, c.outcome) == (reason, retryable, outcome)


def test_a_refused_connection_was_never_sent_a_dropped_one_may_have_been():
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    refused = chained(
        ccxt.ExchangeNotAvailable("binance POST"),
        aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused")),
    )
    dropped = chained(ccxt.ExchangeNotAvailable("binance POST"), aiohttp.ServerDisconnectedError())
    assert classify_error(refused).outcome == "not_sent"
    assert classify_error(dropped).outcome == "maybe_processed"


def test_a_duplicate_id_is_ccxts_class_or_a_plain_invalid_order():
    assert may_be_duplicate_id(ccxt.DuplicateOrderId("x"))
    assert may_be_duplicate_id(ccxt.InvalidOrder("anything at all"))
    assert not may_be_duplicate_id(ccxt.OrderImmediatelyFillable("Duplicate order sent."))
    assert not may_be_duplicate_id(ccxt.ExchangeError("Duplicate order sent."))


def client_after(headers):
    """A real (unmodified) ccxt client whose last answer carried ``headers``, as ccxt sets
    them before it raises."""
    client = ccxt.binance()
    client.last_response_headers = headers
    return client


def test_retry_after_in_seconds_or_as_a_date_and_only_for_rate_limits():
    limited = ccxt.DDoSProtection("429")
    assert retry_after_s(client_after({"Retry-After": "3"}), limited) == 3.0
    assert retry_after_s(client_after({"retry-after": "0.5"}), limited) == 0.5
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_s(client_after({"Retry-After": when}), limited, now=1_000_000.0) == 30.0
    assert retry_after_s(client_after({"Retry-After": "soon"}), limited) is None
    assert retry_after_s(client_after({}), limited) is None
    assert retry_after_s(client_after(None), limited) is None
    assert retry_after_s(client_after({"Retry-After": "3"}), ccxt.RequestTimeout("x")) is None
