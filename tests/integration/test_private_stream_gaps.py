"""The private stream across a user-data-stream gap: the local exchange drops our sockets and
loses every event for a while, a reconnect inside the gap gets nothing back, and what
happened meanwhile (here: a cancel) is only visible by REST. The websocket reader's periodic
catch-up finds it; without it the order would stay open in every consumer's view."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from makerflow.exchange import LocalExchange
from makerflow.schemas.events import OrderEvent
from makerflow.sources.private_stream import PrivateStreamConfig, PrivateStreamReader
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"


@pytest.mark.parametrize("catch_up", [0.5, None])
def test_a_cancel_lost_in_a_stream_gap_is_caught_up_by_rest(catch_up):
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)

        async def go():
            cfg = PrivateStreamConfig(
                url=ex.url,
                mode="websocket",
                reconnect_backoff_s=0.1,
                catch_up_interval_s=catch_up,
            )
            reader = PrivateStreamReader(cfg, lambda pro: ex.client(pro=pro, rateLimit=1))
            rest = ex.client(rateLimit=1)
            stream = reader.events()
            got: list = []

            async def read_until(pred, timeout):
                deadline = time.monotonic() + timeout
                while not any(pred(e) for e in got):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    with contextlib.suppress(asyncio.TimeoutError):
                        got.append(await asyncio.wait_for(stream.__anext__(), left))
                return True

            def order(cid, status):
                return lambda e: (
                    isinstance(e, OrderEvent) and e.client_order_id == cid and e.status == status
                )

            try:
                await rest.load_markets()
                await rest.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, 60000.0, {"clientOrderId": "gap-1"}
                )
                assert await read_until(order("gap-1", "ack"), 5)
                # The next private event drops the sockets and 2 s of events are lost.
                ex.inject("stream_disconnect", gap_s=2.0)
                await rest.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, 60001.0, {"clientOrderId": "gap-2"}
                )
                await asyncio.sleep(0.8)  # the reader has reconnected, inside the gap
                await rest.cancel_order(None, "BTC/USDT", {"clientOrderId": "gap-1"})
                return await read_until(order("gap-1", "canceled"), 4)
            finally:
                await stream.aclose()
                await rest.close()

        seen = asyncio.run(go())
    # With the catch-up the cancel is reported; with the socket alone it never is.
    assert seen is (catch_up is not None)
