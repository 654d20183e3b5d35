"""Orphans have one owner: execution. An order with our prefix that this run never placed,
placed straight on the local exchange while the quoter and execution run (the unmodified
ccxt client, the private stream), is cancelled with one cancel request and one alert.

Found on main (issue 10 loose end): the quoter cancelled and alerted on the orphan's order
event while execution's sweep did the same from the venue's listing, so one orphan got two
owners: two cancels and two ``OrphanOrder`` alerts (or one from each, as the race went).
"""

from __future__ import annotations

import asyncio
import time

import bytewax.operators as op
import msgspec
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from makerflow.exchange import LocalExchange
from makerflow.exchange.market_data import MarketEvent
from makerflow.operators.quoting import quoting_op
from makerflow.schemas.events import Alert, OrderEvent, OrderIntent, Tick
from makerflow.sinks.exchange import ExchangeSinkConfig, execute_intents
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.loopback import Loopback
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream
from tests.integration.test_full_loop import (
    CONFIG,
    CREDS,
    ScriptSource,
    Seen,
    Step,
    book_top,
    two_quotes_rest,
)

pytestmark = pytest.mark.slow

ORPHAN = "mf-0000000000-b3-9"
CANCEL = ("DELETE", "/api/v3/order", ORPHAN)


def place_orphan(ex: LocalExchange) -> bool:
    """an orphan with our prefix is placed on the exchange by hand"""

    async def place() -> None:
        client = ex.client(rateLimit=1)
        try:
            await client.create_order(
                "BTC/USDT", "limit", "buy", 0.001, 60000.0, {"clientOrderId": ORPHAN}
            )
        finally:
            await client.close()

    asyncio.run(place())
    return True


def orphan_canceled_and_settled(ex: LocalExchange, since: list[float]) -> bool:
    """the orphan is canceled on the exchange, and a second owner had time to act too"""
    status = ex.call(
        lambda s: [
            o.status for o in s.engine.all_orders("main", "BTCUSDT") if o.client_order_id == ORPHAN
        ]
    )
    if status != ["CANCELED"]:
        return False
    if not since:
        since.append(time.monotonic())
    return time.monotonic() - since[0] > 1.5  # five sweeps and every private event


@pytest.mark.timeout(120)
def test_an_orphan_gets_one_cancel_and_one_alert_with_quoter_and_execution_running() -> None:
    settled: list[float] = []
    steps: list[Step] = [
        ("book", book_top(0)),
        ("wait", two_quotes_rest(Seen())),
        ("wait", place_orphan),
        # The quoter runs in event time: the market moves on past the orphan's events.
        *[("book", book_top(i)) for i in range(1, 6)],
        ("wait", lambda ex: orphan_canceled_and_settled(ex, settled)),
    ]
    market: list[MarketEvent] = [a for k, a in steps if k == "book"]
    intents: list[OrderIntent] = []
    alerts: list[Alert] = []
    # A quoter resumed or told not to cancel on start: a cancel-all would hide the orphan.
    config = msgspec.structs.replace(CONFIG, cancel_on_start=False)
    with LocalExchange(market=iter(market), speed=0) as ex:
        latch = RunLatch(grace_s=0.5)
        flow = Dataflow("orphans_one_owner")
        script = op.input("script", flow, bounded(ScriptSource(ex, steps), latch, finite=True))
        ticks = op.filter("ticks", script, lambda e: isinstance(e, Tick))
        none = op.filter("none", ticks, lambda _: False)
        priv = private_stream(
            "private",
            flow,
            PrivateStreamConfig(url=ex.url, mode="auto", poll_interval_s=0.05),
            client_factory=lambda pro: ex.client(pro=pro, rateLimit=1),
            stop=latch,
        )
        # As in the all-in-one flow: execution's own order events come back to the quoter.
        feedback: Loopback[OrderEvent] = Loopback()
        fed = op.input("fed", flow, bounded(feedback.source(), latch, finite=False))
        heard = op.merge("heard", priv.orders, fed)
        out = quoting_op("quoting", ticks, none, none, heard, priv.fills, none, config)
        sink_cfg = ExchangeSinkConfig(
            url=ex.url, rate_limit_ms=1, timeout_ms=2_000, intent_ttl_ms=None, sweep_interval_s=0.3
        )
        done = execute_intents(
            "execute",
            out.intents,
            sink_cfg,
            updates=priv.orders,
            fill_updates=priv.fills,
            credentials=CREDS,
        )
        op.output("loopback", done.orders, feedback.sink())
        op.output("intents", out.intents, TestingSink(intents))
        op.output("quoter_alerts", out.alerts, TestingSink(alerts))
        op.output("execution_alerts", done.alerts, TestingSink(alerts))
        run_main(flow)
        cancels = ex.call(lambda s: s.requests_by_order[CANCEL])
        quotes_open = ex.call(
            lambda s: [o.client_order_id for o in s.engine.open_orders("main", "BTCUSDT")]
        )

    assert cancels == 1
    orphan_alerts = [a for a in alerts if a.labels.get("client_order_id") == ORPHAN]
    assert [(a.name, a.labels["action"]) for a in orphan_alerts] == [("OrphanOrder", "cancel")]
    assert not [i for i in intents if i.client_order_id == ORPHAN]  # the quoter never acts
    # ...and never counted it as a quote: its own two quotes still rest, nothing replaced them
    assert len(quotes_open) == 2 and ORPHAN not in quotes_open
