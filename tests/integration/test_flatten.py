"""flatten(): a kill switch's disconnect, confirmed at the venue. The unmodified ccxt client
against the local exchange, with cancels failing there (5xx, timeouts) as a venue's do."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from makerflow.exchange import LocalExchange
from makerflow.sinks.flatten import FlattenReport, flatten
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
SYMBOL = "BTC/USDT"


async def rest_orders(client, n: int, prefix: str = "mf-k") -> list[str]:
    await client.load_markets()
    ids = [f"{prefix}{i}" for i in range(n)]
    for i, cid in enumerate(ids):
        await client.create_order(
            SYMBOL, "limit", "buy", 0.001, 50_000.0 + i, {"clientOrderId": cid, "postOnly": True}
        )
    return ids


def ours_open(ex: LocalExchange) -> list[str]:
    return ex.call(
        lambda s: sorted(
            o.client_order_id
            for o in s.engine.all_orders("main", "BTCUSDT")
            if o.status in ("NEW", "PARTIALLY_FILLED") and o.client_order_id.startswith("mf-")
        )
    )


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"market": SYMBOL})


def test_flatten_cancels_and_confirms_at_the_venue_through_failing_cancels():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)

        async def run() -> FlattenReport:
            client = ex.client(timeout=300)
            try:
                ids = await rest_orders(client, 10)
                await client.create_order(
                    SYMBOL, "limit", "buy", 0.001, 49_000.0, {"clientOrderId": "desk-manual"}
                )
                assert len(ours_open(ex)) == 10
                # The venue fails: two 5xx on the cancel-all, then an answer that comes too
                # late for the client (a timeout), then a 503 on the look at open orders.
                ex.inject("server_error", 2, method="DELETE", path="/api/v3/openOrders")
                ex.inject("timeout", 1, method="DELETE", path="/api/v3/openOrders", delay_s=0.5)
                ex.inject("unavailable", 1, method="GET", path="/api/v3/openOrders")
                rep = await flatten(client, SYMBOL, deadline_s=30.0, breach_ts=None)
                assert set(rep.canceled) <= set(ids)
                return rep
            finally:
                await client.close()

        rep = asyncio.run(run())
        assert ours_open(ex) == []
    assert rep.confirmed and rep.remaining == ()
    assert rep.attempts >= 4
    kinds = " ".join(rep.errors)
    assert "ExchangeError" in kinds or "ExchangeNotAvailable" in kinds
    assert "RequestTimeout" in kinds
    assert "confirmed flat on BTC/USDT" in rep.describe()
    assert gauge("makerflow_kill_switch_confirmed_flat") == 1
    assert gauge("makerflow_kill_switch_cancel_failed") == 0


def test_cancels_that_keep_failing_raise_kill_switch_cancel_failed_and_keep_trying():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)
        failed: list[FlattenReport] = []

        async def run() -> tuple[FlattenReport, FlattenReport]:
            client = ex.client(timeout=1_000)
            try:
                await rest_orders(client, 3)
                ex.inject("server_error", 10_000, method="DELETE", path="/api/v3/openOrders")
                first = await flatten(
                    client,
                    SYMBOL,
                    deadline_s=0.2,
                    give_up_s=0.6,
                    max_backoff_s=0.05,
                    on_cancel_failed=failed.append,
                )
                assert gauge("makerflow_kill_switch_cancel_failed") == 1
                # The venue recovers: the same call confirms, and the alert clears.
                ex.call(lambda s: s.faults.clear())
                second = await flatten(client, SYMBOL, breach_ts=None)
                return first, second
            finally:
                await client.close()

        first, second = asyncio.run(run())
        assert ours_open(ex) == []
    assert not first.confirmed and sorted(first.remaining) == ["mf-k0", "mf-k1", "mf-k2"]
    assert first.attempts > 2  # it kept trying past the deadline
    assert len(failed) == 1 and not failed[0].confirmed  # alerted once
    assert "NOT confirmed flat on BTC/USDT" in failed[0].describe()
    assert "3 of our orders still open" in failed[0].describe()
    assert second.confirmed
    assert gauge("makerflow_kill_switch_cancel_failed") == 0


def test_a_halt_in_a_flow_is_flattened_once_and_the_alert_says_it_is_confirmed():
    import time

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    from makerflow.schemas.events import RiskState
    from makerflow.sinks.flatten import FlattenConfig, flatten_on_halt

    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)

        async def place() -> None:
            client = ex.client()
            try:
                await rest_orders(client, 5)
            finally:
                await client.close()

        asyncio.run(place())
        assert len(ours_open(ex)) == 5
        ex.inject("server_error", 1, method="DELETE", path="/api/v3/openOrders")
        breach = time.time_ns()
        scope = "asset:BTC"
        states = [
            RiskState(ts=breach - 1, scope=scope, status="ACTIVE", heartbeat=True),
            RiskState(ts=breach, scope=scope, status="HALTED", since=breach, reasons=("x",)),
            RiskState(ts=breach + 1, scope=scope, status="HALTED", since=breach, heartbeat=True),
            RiskState(ts=breach + 2, scope="asset:ETH", status="HALTED", since=breach),
        ]
        flow = Dataflow("flatten_flow")
        alerts: list = []
        out = flatten_on_halt(
            "flatten",
            op.input("states", flow, TestingSource(states)),
            FlattenConfig(markets=("binance:BTC/USDT",)),
            lambda: ex.client(timeout=1_000),
        )
        op.output("alerts", out, TestingSink(alerts))
        run_main(flow)
        assert ours_open(ex) == []
    assert [(a.name, a.scope, a.labels["confirmed"]) for a in alerts] == [
        ("KillSwitchFlat", scope, "true")
    ]
    assert "confirmed flat on BTC/USDT: the venue lists none of our orders" in alerts[0].message
    assert int(alerts[0].labels["breach_to_flat_ms"]) >= 0
