"""A cancel-all at the exchange sink is confirmed at the venue: found on main (issue 11), a
failed ``cancel_all`` was logged and returned nothing, and nothing checked that our open
orders reached zero. The unmodified ccxt client, the local exchange failing the cancels."""

from __future__ import annotations

import asyncio

import pytest

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.schemas.events import OrderIntent
from makerflow.sinks.exchange import Credentials, ExchangeExecutor, ExchangeSinkConfig
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
TS = 1_723_161_254_087_000_000


def place(cid, price):
    return OrderIntent(
        ts=TS,
        venue="binance",
        symbol="BTC/USDT",
        action="place",
        client_order_id=cid,
        side="buy",
        price=price,
        qty=0.001,
        reference=61837.0,
    )


CANCEL_ALL = OrderIntent(ts=TS, venue="binance", symbol="BTC/USDT", action="cancel_all")


def open_on_venue(ex):
    return ex.call(
        lambda s: sorted(
            o.client_order_id
            for o in s.engine.all_orders("main", "BTCUSDT")
            if o.status in ("NEW", "PARTIALLY_FILLED")
        )
    )


def test_a_cancel_all_that_fails_at_the_venue_is_retried_until_none_of_ours_remain():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        # Every one of the sink's own attempts fails; the confirmation's retries get through.
        ex.inject("server_error", count=5, method="DELETE", path="/api/v3/openOrders")
        cfg = ExchangeSinkConfig(
            url=ex.url, rate_limit_ms=1, timeout_ms=400, intent_ttl_ms=None, max_attempts=2
        )

        async def go():
            executor = ExchangeExecutor(cfg, credentials=CREDS)
            try:
                placed = await executor.execute_many(
                    [place(f"mf-ca-{i}", 60000.0 + i) for i in range(3)]
                )
                assert [e.status for e in placed] == ["ack"] * 3
                return await executor.execute_many([CANCEL_ALL])
            finally:
                await executor.close()

        events = asyncio.run(go())
        left = open_on_venue(ex)
    # On main: [] and all three still resting.
    assert left == []
    assert sorted((e.client_order_id, e.status) for e in events) == [
        (f"mf-ca-{i}", "canceled") for i in range(3)
    ]
    assert all(e.qty == 0.001 and e.side == "buy" for e in events)
