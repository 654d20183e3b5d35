"""The whole trading loop in one Bytewax flow against the local exchange, through the
unmodified ccxt client:

    ticks -> quoting_op -> order intents -> execute_intents (ccxt) -> local exchange
    local exchange -> private stream (ccxt) -> order events, fills -> quoting_op (inventory)
                   -> skewed quotes -> execute_intents -> local exchange

The flow has no cycle: the loop closes through the exchange, as it does live. The public
market is scripted so the test knows what must happen: the recorded first Binance BTC/USDT
top of book, then, once our two quotes rest on the exchange, a public seller who sweeps down
through our bid. The fill must come back through the private stream, make the quoter long,
and move both of its quotes down on the exchange. Then risk halts everything: one event must
take every order of ours off the exchange.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, run_main

from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.exchange.market_data import BookTop, MarketEvent, PublicTrade
from makerflow.operators.market_ticks import book_tick
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent, QuoteLadder, RiskState, Tick
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig, execute_intents
from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.private_stream import PrivateStreamConfig, private_stream
from tests.quoting_support import load_ticks

pytestmark = pytest.mark.slow

CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)
FIRST = load_ticks(1)[0]  # recorded: bid 61837.63, ask 61837.64
T0_MS = FIRST.ts // 1_000_000
ORDER_SIZE = 0.001

MARKET = MarketConfig(
    venue="binance",
    symbol="BTC/USDT",
    tick_size=0.01,
    lot_size=0.00001,
    min_qty=0.00001,
    min_notional=5.0,
)
# Avellaneda-Stoikov, sigma held at 2 USDT/sqrt(s), rolling horizon 10 s, inventory in BTC:
# gamma sigma^2 tau = 100 * 4 * 10 = 4000 USDT per BTC, 4 USDT per filled order of 0.001;
# (2/(gamma Delta)) ln(1 + gamma Delta/0.95) = 20 ln(1 + 0.1/0.95) = 2.0 USDT.
PARAMS = QuotingParams(
    model="avellaneda_stoikov",
    gamma=100.0,
    kappa=0.95,
    horizon_s=10.0,
    sigma_initial=2.0,
    sigma_half_life_s=1e9,
    warmup_s=0.0,
    order_size=ORDER_SIZE,
    min_spread_bps=0.1,
    refresh_tolerance_bps=0.1,
    size_skew=0.0,
    min_quote_lifetime_s=0.0,
)
CONFIG = QuotingConfig(markets=(MARKET,), defaults=PARAMS, id_namespace="loop")


def our_orders(ex: LocalExchange, open_only: bool = True) -> list[Any]:
    if open_only:
        return ex.call(lambda s: list(s.engine.open_orders("main", "BTCUSDT")))
    return ex.call(lambda s: list(s.engine.all_orders("main", "BTCUSDT")))


def book_top(i: int) -> BookTop:
    return BookTop(
        T0_MS + i * 100,
        "BTCUSDT",
        Decimal(str(FIRST.bid)),
        Decimal(str(FIRST.bid_qty)),
        Decimal(str(FIRST.ask)),
        Decimal(str(FIRST.ask_qty)),
    )


def tick_of(top: BookTop) -> Tick:
    bid, ask = float(top.bid), float(top.ask)
    bq, aq = float(top.bid_qty), float(top.ask_qty)
    return book_tick("binance", "BTC/USDT", top.time_ms * 1_000_000, bid, bq, ask, aq)


Step = tuple[str, Any]


class ScriptPartition(StatefulSourcePartition[Tick | RiskState, int]):
    """Plays the market script: moves the exchange's public market one event at a time (the
    exchange runs with speed 0) and emits each top of book as a tick; a ``risk`` step emits a
    risk state; a ``wait`` step holds the script until the exchange shows what the loop must
    have done by then."""

    def __init__(self, ex: LocalExchange, steps: list[Step], timeout_s: float) -> None:
        self.ex = ex
        self.steps = steps
        self.i = 0
        self.deadline = time.monotonic() + timeout_s
        self.awake: datetime | None = None

    def next_batch(self) -> list[Tick | RiskState]:
        if self.i >= len(self.steps):
            raise StopIteration
        kind, arg = self.steps[self.i]
        if kind == "wait":
            if not arg(self.ex):
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"the loop did not reach step {self.i}: {arg.__doc__}")
                self.awake = datetime.now(UTC) + timedelta(milliseconds=20)
                return []
            self.i += 1
            return []
        self.i += 1
        if kind == "risk":
            return [arg]
        assert self.ex.advance(1) == 1
        return [tick_of(arg)] if kind == "book" else []

    def next_awake(self) -> datetime | None:
        awake, self.awake = self.awake, None
        return awake

    def snapshot(self) -> int:
        return self.i


class ScriptSource(FixedPartitionedSource[Tick | RiskState, int]):
    def __init__(self, ex: LocalExchange, steps: list[Step], timeout_s: float = 30.0) -> None:
        self.ex, self.steps, self.timeout_s = ex, steps, timeout_s

    def list_parts(self) -> list[str]:
        return ["script"]

    def build_part(self, step_id: str, for_part: str, resume: int | None) -> ScriptPartition:
        return ScriptPartition(self.ex, self.steps, self.timeout_s)


class Seen:
    """What the loop did, filled in as the script waits on it."""

    first: dict[str, float]

    def __init__(self) -> None:
        self.first = {}


def two_quotes_rest(seen: Seen) -> Callable[[LocalExchange], bool]:
    def check(ex: LocalExchange) -> bool:
        """our bid and ask rest on the exchange"""
        orders = our_orders(ex)
        sides = {o.side: float(o.price) for o in orders}
        if len(orders) == 2 and set(sides) == {"BUY", "SELL"}:
            seen.first = sides
            return True
        return False

    return check


def skewed_quotes_rest(seen: Seen) -> Callable[[LocalExchange], bool]:
    def check(ex: LocalExchange) -> bool:
        """a lower bid and a lower ask rest after the fill"""
        orders = our_orders(ex)
        sides = {o.side: float(o.price) for o in orders}
        return (
            len(orders) == 2
            and set(sides) == {"BUY", "SELL"}
            and sides["BUY"] < seen.first["BUY"]
            and sides["SELL"] < seen.first["SELL"]
        )

    return check


def nothing_rests(ex: LocalExchange) -> bool:
    """none of our orders rests on the exchange"""
    return not our_orders(ex)


HALT = RiskState(ts=(T0_MS + 600) * 1_000_000, scope="asset:BTC", status="HALTED")


@pytest.mark.timeout(120)
def test_fill_comes_back_through_the_private_stream_and_skews_the_quotes() -> None:
    seen = Seen()
    seller = PublicTrade(T0_MS + 350, "BTCUSDT", Decimal("61800.00"), Decimal("0.01"), "SELL")
    steps: list[Step] = [
        ("book", book_top(0)),
        ("wait", two_quotes_rest(seen)),
        ("book", book_top(1)),
        ("trade", seller),
        ("book", book_top(4)),
        ("wait", skewed_quotes_rest(seen)),
        ("risk", HALT),
        ("wait", nothing_rests),
        ("book", book_top(7)),
    ]
    market: list[MarketEvent] = [a for k, a in steps if k in ("book", "trade")]
    intents: list[OrderIntent] = []
    acks: list[OrderEvent] = []
    fills: list[Fill] = []
    ladders: list[QuoteLadder] = []
    with LocalExchange(market=iter(market), speed=0) as ex:
        latch = RunLatch(grace_s=0.5)
        flow = Dataflow("full_loop")
        script = op.input("script", flow, bounded(ScriptSource(ex, steps), latch, finite=True))
        ticks = op.filter("ticks", script, lambda e: isinstance(e, Tick))
        risk = op.filter("risk", script, lambda e: isinstance(e, RiskState))
        priv = private_stream(
            "private",
            flow,
            PrivateStreamConfig(url=ex.url, mode="auto", poll_interval_s=0.05),
            client_factory=lambda pro: ex.client(pro=pro, rateLimit=1),
            stop=latch,
        )
        none = op.filter("none", ticks, lambda _: False)
        out = quoting_op("quoting", ticks, none, risk, priv.orders, priv.fills, none, CONFIG)
        # Recorded event times: no time-to-live.
        sink_cfg = ExchangeSinkConfig(
            url=ex.url, rate_limit_ms=1, timeout_ms=2_000, intent_ttl_ms=None
        )
        events = execute_intents(
            "execute", out.intents, sink_cfg, updates=priv.orders, credentials=CREDS
        ).orders
        op.output("intents", out.intents, TestingSink(intents))
        op.output("ladders", out.ladders, TestingSink(ladders))
        op.output("acks", events, TestingSink(acks))
        op.output("fills", priv.fills, TestingSink(fills))
        run_main(flow)

        every = our_orders(ex, open_only=False)
        left_open = our_orders(ex)
        balances = ex.call(lambda s: s.engine.balances("main"))

    first_bid, first_ask = seen.first["BUY"], seen.first["SELL"]
    # the first quotes: flat inventory, centred on the recorded mid 61837.635 with half
    # spread (4 + 2.0) / 2 = 3.0 -> bid 61834.63, ask 61840.64 (rounded away from the touch)
    assert first_bid == pytest.approx(61834.63, abs=0.02)
    assert first_ask == pytest.approx(61840.64, abs=0.02)

    # the seller hit our bid; the fill came back through the private stream
    (fill,) = fills
    bid_intent = next(i for i in intents if i.action == "place" and i.side == "buy")
    assert (fill.client_order_id, fill.side, fill.qty, fill.price) == (
        bid_intent.client_order_id,
        "buy",
        ORDER_SIZE,
        first_bid,
    )
    btc = balances["BTC"]
    assert btc.free + btc.locked >= Decimal("2.0009")  # started with 2 BTC

    # one unit long: the reservation price drops by gamma sigma^2 tau = 4 USDT to 61833.635;
    # both quotes moved down on the exchange: bid 61830.635 -> 61830.63; the ask's 61836.64
    # would cross the public bid 61837.63, so post-only it joins the touch at 61837.64
    after = {i.side: i for i in intents if i.action == "place" and fill.ts <= i.ts < HALT.ts}
    assert after["buy"].price == pytest.approx(61830.63, abs=0.02)
    assert after["sell"].price == 61837.64 < first_ask

    # the halt: one event took every order of ours off the exchange, and nothing came back
    at_halt = [i for i in intents if i.ts == HALT.ts]
    assert at_halt[0].action == "cancel_all"
    canceled_at_halt = {i.client_order_id for i in at_halt[1:]}
    # the two resting quotes, and any earlier order whose cancel was not confirmed yet
    assert {after["buy"].client_order_id, after["sell"].client_order_id} <= canceled_at_halt
    assert canceled_at_halt <= {i.client_order_id for i in intents if i.action == "place"}
    assert left_open == []
    assert not [i for i in intents if i.action == "place" and i.ts >= HALT.ts]
    # the fill's fee is paid in BTC, so the position is ORDER_SIZE less the fee: a little less
    # than one unit long
    assert fill.fee_asset == "BTC"
    units = (ORDER_SIZE - fill.fee) / ORDER_SIZE
    # The venue reports the trade twice, on two streams in either order. Order update first:
    # the quoter prices the whole unit at once (OrderState.unbooked), and the fee the fill
    # brings later moves the reservation by less than a tick, so no new ladder need follow.
    # Fill first: the reservation is net of the fee at once. (The fee netting itself:
    # tests/unit/test_inventory.py.)
    assert any(
        lad.reservation == pytest.approx(61837.635 - 4.0 * u, abs=1e-6)
        for lad in ladders
        for u in (units, 1.0)
    )

    # every order the exchange saw came from the quoter, once: no client order id twice
    ids = [o.client_order_id for o in every]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"mf-[0-9a-f]{10}-[bs]\d+-[0-9a-z]+", i) for i in ids)
    assert set(ids) == {i.client_order_id for i in intents if i.action == "place"}
    assert not [e for e in acks if e.status == "rejected"], acks
