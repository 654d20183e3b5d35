"""The all-in-one service on Kafka: a recorded session replayed through every operator in one
process, from the market-data topics to ticks, index and order intents (a backtest of the
signal path)."""

from __future__ import annotations

from typing import Any

import pytest
from bytewax.testing import run_main

from makerflow.broker import Broker
from makerflow.flows.all_in_one import PipelineConfig, build_flow
from makerflow.flows.common import FlowSettings
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.operators.market_ticks import MarketTicks
from makerflow.operators.ticks import TicksConfig
from makerflow.schemas import topics as t
from makerflow.schemas.events import DeadLetter, Tick, Trade
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"


def _decode(topic: t.Topic[Any], msgs: list[Any]) -> list[Any]:
    return [topic.codec.decode(m.value()) for m in msgs]


def test_recorded_topics_through_the_all_in_one_flow() -> None:
    events = [e for e in read_recorded(SPOT) if not isinstance(e, DeadLetter)]
    trades = [e for e in events if isinstance(e, Trade)]
    book = [e for e in events if not isinstance(e, Trade)]
    with Broker() as broker:
        brokers = [broker.bootstrap]
        ensure_topics(brokers, list(t.TOPICS))
        produce_events(brokers, t.MD_BOOK, book)
        produce_events(brokers, t.MD_TRADES, trades)

        # Replaying whole topics, one topic can run a session ahead of the other: align book
        # updates and trades in event time (a backtest must not depend on arrival order).
        config = PipelineConfig(execute=False, ticks=TicksConfig(align_ms=600_000))
        run_main(build_flow(FlowSettings(brokers=tuple(brokers), tail=False), config))

        ticks = _decode(t.TICKS, read_topic(brokers, t.TICKS.name, idle=2.0))
        index = _decode(t.INDEX, read_topic(brokers, t.INDEX.name, idle=1.0))
        intents = _decode(t.ORDER_INTENTS, read_topic(brokers, t.ORDER_INTENTS.name, idle=1.0))
        dead = read_topic(brokers, t.DEAD_LETTERS.name, idle=1.0)

    # The ticks the pure logic makes of the recording in its own (receive) order: the same
    # top of book after every book change, and a tick for every trade. (Event-time merging may
    # order a trade and a book update of the same millisecond differently, so last-trade
    # fields are compared per kind, not tick by tick.)
    market = MarketTicks("binance", "BTC/USDT", TicksConfig())
    expected = [o for e in events for o in market.on_event(e) if isinstance(o, Tick)]

    def tops(ks: list[Tick]) -> list[tuple[int, float, float, float, float]]:
        return [(k.ts, k.bid, k.bid_qty, k.ask, k.ask_qty) for k in ks if k.reason == "book"]

    assert tops(ticks) == tops(expected)
    trade_ticks = [(k.ts, k.last_price, k.last_qty) for k in ticks if k.reason == "trade"]
    expected_trades = [(k.ts, k.last_price, k.last_qty) for k in expected if k.reason == "trade"]
    assert abs(len(trade_ticks) - len(expected_trades)) <= 1
    assert set(trade_ticks) >= set(expected_trades[1:])
    # One CEX venue and no DEX: the BTC basket is not priced, and says why.
    btc = [i for i in index if i.basket == "BTC"]
    assert btc and all(i.price is None for i in btc)
    assert "need 2" in btc[-1].reason
    # The quoter starts by clearing the market, then quotes both sides around the mid.
    assert intents[0].action == "cancel_all"
    placed = [i for i in intents if i.action == "place"]
    assert {i.side for i in placed} == {"buy", "sell"}
    mid = ticks[-1].mid
    assert all(abs(i.price / mid - 1) < 0.01 for i in placed)
    assert dead == []
