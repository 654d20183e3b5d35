"""The local exchange breaks the way the venue does, seen through the unmodified ccxt client
(``ccxt.async_support.binance`` for REST, ``ccxt.pro.binance`` for the user data stream):
client ids reusable once closed, answers lost after processing, requests landing after the
client gave up, duplicated and reordered private events, a private stream gap, 429/418 with
Retry-After, orders the venue expires, and a seeded chaos mix counted per kind."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import aiohttp
import ccxt.async_support as ccxt
import pytest

from makerflow.exchange import LocalExchange, ccxt_client
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"
SYMBOL = "BTC/USDT"


@pytest.fixture
def exchange():
    with LocalExchange(speed=0, replay=REPLAY) as ex:
        ex.advance(1)  # the first top of book: 61837.63 / 61837.64
        yield ex


def run(coro):
    return asyncio.run(coro)


async def _with(client, fn):
    try:
        await client.load_markets()
        return await fn(client)
    finally:
        await client.close()


async def _lookup(c, cid):
    try:
        return await c.fetch_order(None, SYMBOL, {"clientOrderId": cid})
    except ccxt.OrderNotFound:
        return None


class Watcher:
    """Collects every ``watch_orders`` / ``watch_my_trades`` resolution of a ccxt.pro client
    (what a consumer of the private stream sees, duplicates and order included)."""

    def __init__(self, pro):
        self.pro = pro
        self.orders: list[tuple[str, str, float]] = []
        self.trades: list[tuple[str, float]] = []
        self.errors: list[BaseException] = []
        self._tasks: list[asyncio.Task] = []

    async def start(self):
        await self.pro.load_markets()

        async def orders():
            while True:
                for o in await self.pro.watch_orders(SYMBOL):
                    self.orders.append((o["clientOrderId"], o["status"], o["filled"]))

        async def trades():
            while True:
                for t in await self.pro.watch_my_trades(SYMBOL):
                    self.trades.append((t["id"], t["amount"]))

        for fn in (orders, trades):
            task = asyncio.ensure_future(fn())
            task.add_done_callback(lambda t: t.cancelled() or self.errors.append(t.exception()))
            self._tasks.append(task)
        await asyncio.sleep(0.3)  # subscribed

    async def stop(self):
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pro.close()


def test_a_client_id_is_free_again_once_its_order_is_closed(exchange):
    """Binance refuses a repeated ``newClientOrderId`` only while its order is open, with
    -2010 "Duplicate order sent.", which ccxt's binance maps (by code) to InvalidOrder."""

    async def go(c):
        first = await c.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "r-1"})
        try:
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 60900, {"clientOrderId": "r-1"})
            dup = None
        except ccxt.BaseError as exc:
            dup = exc
        body = str(dup)
        await c.cancel_order(None, SYMBOL, {"clientOrderId": "r-1"})
        second = await c.create_order(SYMBOL, "limit", "buy", 0.02, 60800, {"clientOrderId": "r-1"})
        by_cid = await c.fetch_order(None, SYMBOL, {"clientOrderId": "r-1"})
        return first, dup, body, second, by_cid, await c.fetch_orders(SYMBOL)

    first, dup, body, second, by_cid, orders = run(_with(exchange.client(), go))
    assert type(dup) is ccxt.InvalidOrder
    assert body == 'binance {"code": -2010, "msg": "Duplicate order sent."}'
    assert second["id"] != first["id"] and second["status"] == "open"
    assert by_cid["id"] == second["id"] and by_cid["amount"] == 0.02
    assert [(o["clientOrderId"], o["status"]) for o in orders] == [
        ("r-1", "canceled"),
        ("r-1", "open"),
    ]


def test_answer_lost_after_the_order_was_placed_and_after_it_was_canceled(exchange):
    """The venue processes the request, then the answer is lost: the connection drops
    (``lost``) or the answer comes after the client's timeout (``timeout`` with ``after``).
    The client sees an error; the venue did what was asked."""
    exchange.inject("lost", method="POST", path="/api/v3/order", delay_s=0.05)
    exchange.inject("timeout", method="DELETE", path="/api/v3/order", after=True, delay_s=2.0)
    exchange.inject("timeout", method="POST", path="/api/v3/order", after=True, delay_s=2.0)
    exchange.inject("lost", method="DELETE", path="/api/v3/order", delay_s=0.05)

    async def go(c):
        errors = []
        states = []
        for call, cid in (
            (
                lambda: c.create_order(
                    SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "l-1"}
                ),
                "l-1",
            ),
            (lambda: c.cancel_order(None, SYMBOL, {"clientOrderId": "l-1"}), "l-1"),
            (
                lambda: c.create_order(
                    SYMBOL, "limit", "sell", 0.01, 62000, {"clientOrderId": "l-2"}
                ),
                "l-2",
            ),
            (lambda: c.cancel_order(None, SYMBOL, {"clientOrderId": "l-2"}), "l-2"),
        ):
            try:
                await call()
                errors.append(None)
            except ccxt.BaseError as exc:
                errors.append(type(exc))
            states.append((await _lookup(c, cid))["status"])
        return errors, states

    errors, states = run(_with(exchange.client(timeout=1000), go))
    assert errors[:3] == [ccxt.ExchangeNotAvailable, ccxt.RequestTimeout, ccxt.RequestTimeout]
    # A dropped DELETE is retried by aiohttp itself (an idempotent method on a reused
    # connection): the retry finds the order already canceled, -2011, OrderNotFound.
    assert errors[3] in (ccxt.ExchangeNotAvailable, ccxt.OrderNotFound)
    assert states == ["open", "canceled", "open", "canceled"]
    assert exchange.state()["faults_by_kind"] == {"lost": 2, "timeout_after": 2}


def test_a_request_that_lands_after_the_client_gave_up_and_looked(exchange):
    """The place is processed 1.5 s late: the client times out at 0.5 s, looks the order up
    by client id and finds nothing, and the order appears afterwards. Re-sent meanwhile, the
    late copy meets the open re-send and is refused as a duplicate; but once the re-send is
    closed, a late copy lands as a second order with the same client id."""
    exchange.inject("late", method="POST", path="/api/v3/order", delay_s=1.5)

    async def go(c):
        t0 = time.monotonic()
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "late-1"})
        gave_up = time.monotonic() - t0
        right_after = await _lookup(c, "late-1")
        found = None
        while found is None and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.1)
            found = await _lookup(c, "late-1")

        # Re-sent after an empty look-up: the re-send is placed, the late copy is refused.
        exchange.inject("late", method="POST", path="/api/v3/order", delay_s=1.0)
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 60000, {"clientOrderId": "late-2"})
        missing = await _lookup(c, "late-2")
        resent = await c.create_order(
            SYMBOL, "limit", "buy", 0.01, 60000, {"clientOrderId": "late-2"}
        )
        await asyncio.sleep(1.5)
        after_late_copy = [
            o for o in await c.fetch_orders(SYMBOL) if o["clientOrderId"] == "late-2"
        ]

        # The same, but the re-send is canceled before the late copy lands: two orders.
        exchange.inject("late", method="POST", path="/api/v3/order", delay_s=1.0)
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 59000, {"clientOrderId": "late-3"})
        await c.create_order(SYMBOL, "limit", "buy", 0.01, 59000, {"clientOrderId": "late-3"})
        await c.cancel_order(None, SYMBOL, {"clientOrderId": "late-3"})
        await asyncio.sleep(1.5)
        twice = [o for o in await c.fetch_orders(SYMBOL) if o["clientOrderId"] == "late-3"]
        return gave_up, right_after, found, missing, resent, after_late_copy, twice

    gave_up, right_after, found, missing, resent, after_late_copy, twice = run(
        _with(exchange.client(timeout=500), go)
    )
    assert gave_up < 1.5
    assert right_after is None
    assert found is not None and found["status"] == "open" and found["price"] == 61000
    assert missing is None
    assert [o["id"] for o in after_late_copy] == [resent["id"]]
    assert [o["status"] for o in twice] == ["canceled", "open"]
    assert exchange.state()["faults_by_kind"] == {"late": 3}


def test_a_late_request_outside_its_recv_window_never_lands(exchange):
    """Binance's matching engine checks ``recvWindow`` when the request reaches it: a client
    whose recvWindow is shorter than the delay is sure its given-up request will not land."""
    exchange.inject("late", method="POST", path="/api/v3/order", delay_s=1.5)

    async def go(c):
        with pytest.raises(ccxt.RequestTimeout):
            await c.create_order(
                SYMBOL,
                "limit",
                "buy",
                0.01,
                61000,
                {"clientOrderId": "rw-1", "recvWindow": 1000},
            )
        await asyncio.sleep(2.0)
        return await _lookup(c, "rw-1"), await c.fetch_orders(SYMBOL)

    found, orders = run(_with(exchange.client(timeout=500), go))
    assert found is None and orders == []
    assert exchange.state()["faults_by_kind"] == {"late": 1}


def test_private_events_duplicated(exchange):
    exchange.inject("duplicate_event", exec_type="NEW", delay_s=0.05)
    exchange.inject("duplicate_event", exec_type="TRADE", delay_s=0.05)

    async def go():
        watcher, rest = Watcher(exchange.client(pro=True)), exchange.client()
        try:
            await watcher.start()
            await rest.load_markets()
            await rest.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "d-1"})
            await asyncio.sleep(0.3)
            await rest.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "d-2"})
            await asyncio.sleep(0.5)
            return watcher.orders, watcher.trades
        finally:
            await watcher.stop()
            await rest.close()

    orders, trades = run(go())
    assert orders[:2] == [("d-1", "open", 0.0), ("d-1", "open", 0.0)]
    assert orders.count(("d-2", "closed", 0.01)) == 2
    assert len(trades) == 2 and trades[0] == trades[1]


def test_private_events_reordered_fill_before_and_after_the_order_update(exchange):
    """(1) The NEW report is held back: the order's fill (FILLED) reaches the client first,
    then the order looks open again. (2) A market buy bigger than the top fills in part and
    expires; its TRADE report is held behind the EXPIRED one: the fill arrives after the
    order's final update."""
    exchange.inject("reorder_event", exec_type="NEW")

    async def go():
        watcher, rest = Watcher(exchange.client(pro=True)), exchange.client()
        try:
            await watcher.start()
            await rest.load_markets()
            await rest.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "o-1"})
            await asyncio.sleep(0.5)
            exchange.inject("reorder_event", exec_type="TRADE")
            await rest.create_order(SYMBOL, "market", "buy", 1.6, None, {"clientOrderId": "o-2"})
            await asyncio.sleep(0.5)
            return watcher.orders, watcher.trades
        finally:
            await watcher.stop()
            await rest.close()

    orders, trades = run(go())
    first = [o for o in orders if o[0] == "o-1"]
    assert first == [("o-1", "closed", 0.01), ("o-1", "open", 0.0)]
    second = [o for o in orders if o[0] == "o-2"]
    # NEW, then EXPIRED with the partial fill (what o-1 left of the top's 1.54698), then the
    # held TRADE: the order partially filled and "open" again in ccxt's parse of its
    # X=PARTIALLY_FILLED.
    assert second == [
        ("o-2", "open", 0.0),
        ("o-2", "expired", 1.53698),
        ("o-2", "open", 1.53698),
    ]
    assert [q for _, q in trades] == [0.01, 1.53698]


def test_private_stream_disconnect_loses_the_gap_for_good(exchange):
    """The venue drops the user data connection; what happens in the next second is never
    sent, not even after the client resubscribes. Only REST shows it."""

    async def go():
        watcher, rest = Watcher(exchange.client(pro=True)), exchange.client()
        try:
            await watcher.start()
            await rest.load_markets()
            exchange.disconnect(gap_s=1.0)
            await asyncio.sleep(0.1)
            await rest.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "g-1"})
            await rest.create_order(SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "g-2"})
            dropped = list(watcher.errors)
            await watcher.stop()
            # A new subscription inside the gap gets nothing of it either.
            watcher = Watcher(exchange.client(pro=True))
            await watcher.start()
            await asyncio.sleep(1.0)
            await rest.create_order(SYMBOL, "limit", "buy", 0.01, 60900, {"clientOrderId": "g-3"})
            await asyncio.sleep(0.3)
            open_ids = [o["clientOrderId"] for o in await rest.fetch_open_orders(SYMBOL)]
            return dropped, watcher.orders, watcher.trades, open_ids
        finally:
            await watcher.stop()
            await rest.close()

    dropped, orders, trades, open_ids = run(go())
    assert dropped and all(isinstance(e, ccxt.NetworkError) for e in dropped)
    assert orders == [("g-3", "open", 0.0)]
    assert trades == []
    assert open_ids == ["g-1", "g-3"]
    assert exchange.state()["private_events_missed"] >= 4


def test_rate_limit_burst_and_ban_with_retry_after(exchange):
    """A 429 with Retry-After: 1; coming back before it has passed gets another 429 (a
    burst); after it, the order goes in. The same for 418 (Binance's ban)."""
    exchange.inject(
        "rate_limit", method="POST", path="/api/v3/order", retry_after_s=1, enforce=True
    )

    async def attempt(c, cid):
        try:
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": cid})
            return ("ok", None)
        except ccxt.BaseError as exc:
            return (type(exc).__name__, c.last_response_headers.get("Retry-After"))

    async def go(c):
        seen = [await attempt(c, "rl-1"), await attempt(c, "rl-1")]
        seen.append(await attempt(c, "rl-0-other"))  # the balance is fine: it is the limit
        await asyncio.sleep(1.1)
        seen.append(await attempt(c, "rl-1"))
        exchange.inject("ban", method="POST", path="/api/v3/order", retry_after_s=2, enforce=True)
        seen.append(await attempt(c, "ban-1"))
        status = c.last_http_response
        await asyncio.sleep(0.5)
        seen.append(await attempt(c, "ban-1"))
        await asyncio.sleep(1.6)
        seen.append(await attempt(c, "ban-1"))
        return seen, status

    seen, ban_body = run(_with(exchange.client(enableRateLimit=False), go))
    assert seen == [
        ("DDoSProtection", "1"),
        ("DDoSProtection", "1"),
        ("DDoSProtection", "1"),
        ("ok", None),
        ("DDoSProtection", "2"),
        ("DDoSProtection", "2"),
        ("ok", None),
    ]
    assert "IP banned until" in ban_body
    state = exchange.state()
    assert state["faults_by_kind"] == {"ban": 1, "rate_limit": 1}
    assert state["refused_during_retry_after"] == {"ban": 1, "rate_limit": 2}


def test_the_venue_expires_orders_on_its_own(exchange):
    """On command, after a fault's delay, and after a configured lifetime: status EXPIRED,
    an executionReport saying so, the hold released."""
    exchange.inject("expire", method="POST", path="/api/v3/order", delay_s=0.3)

    async def go():
        watcher, rest = Watcher(exchange.client(pro=True)), exchange.client()
        try:
            await watcher.start()
            await rest.load_markets()
            await rest.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "x-1"})
            placed = await _lookup(rest, "x-1")
            await asyncio.sleep(0.6)
            later = await _lookup(rest, "x-1")
            await rest.create_order(SYMBOL, "limit", "buy", 0.01, 60000, {"clientOrderId": "x-2"})
            exchange.expire("x-2")
            await asyncio.sleep(0.3)
            return (
                placed,
                later,
                await _lookup(rest, "x-2"),
                watcher.orders,
                await rest.fetch_balance(),
            )
        finally:
            await watcher.stop()
            await rest.close()

    placed, later, commanded, orders, balance = run(go())
    assert placed["status"] == "open"
    assert later["status"] == "expired" and commanded["status"] == "expired"
    assert orders == [
        ("x-1", "open", 0.0),
        ("x-1", "expired", 0.0),
        ("x-2", "open", 0.0),
        ("x-2", "expired", 0.0),
    ]
    assert balance["used"]["USDT"] == 0.0
    assert exchange.state()["expired_by_venue"] == 2


def test_orders_older_than_the_venue_lifetime_expire_in_event_time():
    with LocalExchange(speed=0, replay=REPLAY, order_lifetime_ms=2_000) as ex:
        ex.advance(1)

        async def go(c):
            await c.create_order(SYMBOL, "limit", "buy", 0.01, 61000, {"clientOrderId": "ttl-1"})
            before = await _lookup(c, "ttl-1")
            t0 = ex.call(lambda s: s.engine.time_ms)
            while ex.call(lambda s: s.engine.time_ms) - t0 < 2_000:
                assert ex.advance(10)
            return before, await _lookup(c, "ttl-1")

        before, after = run(_with(ex.client(), go))
    assert before["status"] == "open" and after["status"] == "expired"


def test_chaos_mix_through_the_admin_endpoint_counted_per_kind(exchange):
    """Chaos switched on over the admin endpoint strikes order requests at the given rate with
    a seeded mix; the admin state counts each kind, and the venue's ground truth shows what
    really happened."""

    async def go(c):
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{exchange.url}/_admin/faults",
                json={
                    "chaos": {
                        "rate": 0.5,
                        "seed": 3,
                        "kinds": ["unavailable", "server_error_after", "rate_limit"],
                        "retry_after_s": 0,
                    }
                },
            )
            assert resp.status == 200
            outcomes = []
            for i in range(40):
                try:
                    await c.create_order(
                        SYMBOL, "limit", "buy", 0.001, 60000 + i, {"clientOrderId": f"c-{i}"}
                    )
                    outcomes.append("ok")
                except ccxt.BaseError as exc:
                    outcomes.append(type(exc).__name__)
            state = await (await http.get(f"{exchange.url}/_admin/state")).json()
            orders = await (await http.get(f"{exchange.url}/_admin/orders")).json()
        return outcomes, state, orders

    outcomes, state, orders = run(_with(exchange.client(enableRateLimit=False), go))
    by_kind = state["faults_by_kind"]
    assert set(by_kind) == {"unavailable", "server_error_after", "rate_limit"}
    assert sum(by_kind.values()) == outcomes.count("ExchangeNotAvailable") + outcomes.count(
        "DDoSProtection"
    )
    assert 10 <= sum(by_kind.values()) <= 30  # 40 requests at 0.5
    assert state["chaos"]["seed"] == 3
    # Accepted by the venue: the successes and the answers lost after processing.
    assert len(orders) == outcomes.count("ok") + by_kind["server_error_after"]


def test_makerflow_exchange_command_runs_chaos_and_counts_it(tmp_path):
    """``makerflow exchange --chaos-rate R --chaos-kinds K`` in its own process: order
    requests are struck at that rate and GET /_admin/state counts them per kind."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "makerflow.cli",
            "exchange",
            "--port",
            "0",
            "--speed",
            "1",
            "--chaos-rate",
            "1",
            "--chaos-kinds",
            "unavailable",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)

        async def go(c):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await c.create_order(SYMBOL, "limit", "buy", 0.01, 50000, {"clientOrderId": "k"})
            async with aiohttp.ClientSession() as http:
                return await (await http.get(f"{url}/_admin/state")).json()

        state = run(_with(ccxt_client(url), go))
        assert state["faults_by_kind"] == {"unavailable": 1}
        assert state["chaos"]["rate"] == 1.0 and state["chaos"]["kinds"] == ["unavailable"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
