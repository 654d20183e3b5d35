"""The index operator in a Bytewax flow: under run_main and cluster_main with one and two
workers, and as the Kafka service flow against the real broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.flows.common import FlowSettings
from makerflow.flows.index import IndexTopics, build_flow
from makerflow.kafka_admin import ensure_topics, produce_events, read_topic
from makerflow.operators.index import index_op
from makerflow.operators.index_config import Basket, BasketAsset, IndexConfig
from makerflow.schemas import topics as reg
from makerflow.schemas.events import DexPrice, IndexPrice, OraclePrice, Tick
from makerflow.schemas.topics import Topic

S = 1_000_000_000
T0 = 1_723_161_600 * S

BASKETS = (
    Basket(
        name="BTC", quote="USDT", quote_aliases=("USDC", "USD"), assets=(BasketAsset(asset="BTC"),)
    ),
    Basket(
        name="MAJ", quote="USDT", quote_aliases=("USDC", "USD"),
        assets=(BasketAsset(asset="BTC", weight=0.5), BasketAsset(asset="ETH", weight=10)),
    ),
)  # fmt: skip
CONFIG = IndexConfig(baskets=BASKETS, weighting="equal", max_venue_share=1.0, max_age_s=30.0)


def tick(venue: str, symbol: str, mid: float, ts: int) -> Tick:
    return Tick(
        ts=ts, venue=venue, symbol=symbol, reason="book", bid=mid - 0.5, bid_qty=1.0,
        ask=mid + 0.5, ask_qty=1.0, mid=mid, microprice=mid, spread_bps=1.0, imbalance=0.0,
    )  # fmt: skip


def inputs() -> tuple[list[Tick], list[DexPrice | OraclePrice]]:
    ticks = [
        tick("binance", "BTC/USDT", 60000, T0 + 1 * S),
        tick("okx", "BTC/USDT", 60020, T0 + 2 * S),
        tick("coinbase", "BTC/USD", 60010, T0 + 3 * S),
        tick("binance", "ETH/USDT", 3000, T0 + 4 * S),
        tick("okx", "ETH/USDT", 3004, T0 + 5 * S),
        tick("binance", "SOL/USDT", 150, T0 + 6 * S),  # in no basket
        tick("binance", "BTC/USDT", 60030, T0 + 7 * S),  # binance moves
    ]
    dex: list[DexPrice | OraclePrice] = [
        DexPrice(
            ts=T0 + 3 * S, chain="local", venue="uniswap_v3", pool="0xeth", base="ETH",
            quote="USDC", block=10, price=3002, liquidity=1e6,
        ),
        OraclePrice(
            ts=T0 + 4 * S, chain="local", feed="0xbtcfeed", base="BTC", quote="USD", block=11,
            round_id=5, price=59000, updated_at=T0,
        ),
    ]  # fmt: skip
    return ticks, dex


def build(ticks: list[Tick], dex: list[DexPrice | OraclePrice], out: list[IndexPrice]) -> Dataflow:
    flow = Dataflow("index_test")
    t = op.input("ticks", flow, TestingSource(ticks))
    d = op.input("dex", flow, TestingSource(dex))
    op.output("out", index_op("index", t, d, CONFIG), TestingSink(out))
    return flow


def last_by_basket(out: list[IndexPrice]) -> dict[str, IndexPrice]:
    last: dict[str, IndexPrice] = {}
    for p in out:
        if p.basket not in last or p.ts >= last[p.basket].ts:
            last[p.basket] = p
    return last


def check_final(last: dict[str, IndexPrice]) -> None:
    btc = last["BTC"]
    # BTC venues at the end: okx 60020, coinbase 60010, binance 60030 -> median 60020.
    assert btc.price == 60020
    assert btc.ts == T0 + 7 * S
    # The oracle (59000) is 172.9 bps away: the index is flagged, not moved.
    assert btc.flagged
    assert btc.oracle_price == 59000
    assert btc.oracle_deviation_bps == pytest.approx((60020 - 59000) / 59000 * 1e4)
    maj = last["MAJ"]
    # ETH: 3000, 3002 (DEX), 3004 -> 3002. 0.5 * 60020 + 10 * 3002 = 60030.
    assert maj.price == pytest.approx(60030)
    assert {v.venue for v in maj.constituents[1].used} == {"binance", "okx", "uniswap_v3:0xeth"}
    # MAJ has no ETH oracle: the check is skipped and says why.
    assert maj.reason == "oracle check skipped: no oracle answer for ETH"


def test_index_op_under_each_runner(run_flow: Callable[[Dataflow], None]) -> None:
    ticks, dex = inputs()
    out: list[IndexPrice] = []
    run_flow(build(ticks, dex, out))
    by_basket: dict[str, int] = {}
    for p in out:
        by_basket[p.basket] = by_basket.get(p.basket, 0) + 1
    # Every event changes each basket holding its asset: 4 BTC ticks + the BTC oracle for
    # BTC; those 5 and 2 ETH ticks + the ETH pool for MAJ. SOL reaches neither.
    assert by_basket == {"BTC": 5, "MAJ": 8}
    check_final(last_by_basket(out))


@pytest.mark.slow
def test_index_service_on_kafka(broker, unique) -> None:
    topics = IndexTopics(
        ticks=Topic(unique("i.ticks"), "market", reg.TICKS.value_type),
        dex=Topic(unique("i.dex"), "pool", reg.DEX_PRICES.value_type),
        index=Topic(unique("i.index"), "basket", reg.INDEX.value_type),
    )
    brokers = (broker.bootstrap,)
    ensure_topics(
        brokers, [topics.ticks.name, topics.dex.name, topics.index.name, reg.DEAD_LETTERS.name]
    )
    ticks, dex = inputs()
    produce_events(brokers, topics.ticks, ticks)
    produce_events(brokers, topics.dex, dex)
    run_main(build_flow(FlowSettings(brokers=brokers, tail=False), CONFIG, topics, "index_kafka"))
    out = [
        reg.INDEX.codec.decode(m.value())
        for m in read_topic(brokers, topics.index.name, idle=1.0, timeout=30)
    ]
    assert len(out) == 13
    assert {m.basket for m in out} == {"BTC", "MAJ"}
    check_final(last_by_basket(out))


def test_resume_after_a_crash_gives_the_same_index(tmp_path) -> None:
    """With recovery on, a crash mid-stream and a resume end with the same index as an
    uninterrupted run: each basket's snapshot restores its venues and oracle answers."""
    ticks, dex = inputs()
    events: list[Tick | DexPrice | OraclePrice] = sorted([*ticks, *dex], key=lambda e: e.ts)
    crash_at = 5
    with_abort = [*events[:crash_at], TestingSource.ABORT(), *events[crash_at:]]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    runs: list[list[IndexPrice]] = []
    for _ in range(2):  # the first run stops at the abort, the second resumes
        out: list[IndexPrice] = []
        flow = Dataflow("index_recovery")
        split = op.branch("split", op.input("in", flow, TestingSource(with_abort)), is_tick)
        op.output("out", index_op("index", split.trues, split.falses, CONFIG), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
        runs.append(out)
    first, second = runs
    assert first and max(p.ts for p in first) <= events[crash_at].ts
    assert second and min(p.ts for p in second) >= events[crash_at].ts
    # The resumed run knew what came before the crash: its final prices use venues
    # seen only in the first run.
    check_final(last_by_basket(second))


def is_tick(e: object) -> bool:
    return isinstance(e, Tick)
