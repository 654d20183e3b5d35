"""When a market's start takes the intents from before its run to be all in."""

from __future__ import annotations

from makerflow.schemas.events import OrderIntent
from makerflow.schemas.markers import CaughtUp
from makerflow.sinks.exchange_start import IntentsArrived

MS = 1_000_000
START = 1_000_000 * MS
KEY = "binance:BTC/USDT"


def arrived(marked: bool) -> IntentsArrived:
    return IntentsArrived(
        started_ns=START, now_ns=START, settle_ms=300, wait_ms=10_000, marked=marked
    )


def cancel(ts: int) -> OrderIntent:
    return OrderIntent(
        ts=ts, venue="binance", symbol="BTC/USDT", action="cancel", client_order_id="mf-1"
    )


def test_without_markers_a_pause_after_the_first_intents_ends_the_wait() -> None:
    a = arrived(marked=False)
    assert a.verdict(START + 5_000 * MS) is None  # nothing came yet: no pause to judge by
    a.on_intents([cancel(START - 60_000 * MS)], START + 5_000 * MS)
    assert a.verdict(START + 5_299 * MS) is None
    assert a.verdict(START + 5_300 * MS) == "arrived"


def test_with_markers_only_every_partition_read_ends_it_not_a_pause() -> None:
    a = arrived(marked=True)
    a.on_intents([cancel(START - 60_000 * MS)], START)
    assert a.verdict(START + 5_000 * MS) is None
    a.on_marker(CaughtUp(KEY, "orders.intents", 1, 3))
    a.on_marker(CaughtUp(KEY, "orders.intents", 1, 3))  # the same partition again
    a.on_marker(CaughtUp(KEY, "orders.intents", 0, 3))
    assert a.verdict(START + 5_000 * MS) is None
    a.on_marker(CaughtUp(KEY, "orders.intents", 2, 3))
    assert a.verdict(START + 5_000 * MS) == "arrived"


def test_a_marker_of_unknown_partition_count_never_ends_it() -> None:
    a = arrived(marked=True)
    a.on_marker(CaughtUp(KEY, "orders.intents", 0))
    assert a.verdict(START + 1) is None


def test_an_intent_of_this_run_ends_it_and_the_wait_is_bounded() -> None:
    a = arrived(marked=True)
    a.on_intents([cancel(START - 1), cancel(START)], START + 10 * MS)
    assert a.verdict(START + 10 * MS) == "arrived"
    b = arrived(marked=True)
    b.on_intents([cancel(START - 1)], START + 10 * MS)
    assert b.verdict(START + 9_999 * MS) is None
    assert b.verdict(START + 10_000 * MS) == "waited"
