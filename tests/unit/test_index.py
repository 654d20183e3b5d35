"""The index logic on hand-computed baskets: medians, weights, exclusions and their reasons,
too few venues, the oracle check, routing, and resume from a snapshot."""

from __future__ import annotations

import msgspec
import pytest

from makerflow.operators.index import BasketRouter
from makerflow.operators.index_basket import BasketIndex
from makerflow.operators.index_config import Basket, BasketAsset, IndexConfig, load_index_config
from makerflow.operators.index_fair import cap_shares, weighted_median
from makerflow.schemas.events import DexPrice, IndexPrice, OraclePrice, Tick

S = 1_000_000_000
T0 = 1_700_000_000 * S


def tick(
    venue: str,
    mid: float,
    ts: int = T0,
    symbol: str = "BTC/USDT",
    qty: float = 1.0,
    spread: float = 0.02,
) -> Tick:
    bid, ask = mid - spread / 2, mid + spread / 2
    return Tick(
        ts=ts, venue=venue, symbol=symbol, reason="book", bid=bid, bid_qty=qty, ask=ask,
        ask_qty=qty, mid=mid, microprice=mid, spread_bps=spread / mid * 1e4, imbalance=0.0,
    )  # fmt: skip


def dex(
    pool: str,
    price: float,
    ts: int = T0,
    base: str = "BTC",
    quote: str = "USDC",
    liq: float = 100.0,
) -> DexPrice:
    return DexPrice(
        ts=ts, chain="local", venue="uniswap_v3", pool=pool, base=base, quote=quote, block=1,
        price=price, liquidity=liq,
    )  # fmt: skip


def oracle(
    price: float, ts: int = T0, base: str = "BTC", updated_at: int | None = None, rid: int = 1
) -> OraclePrice:
    return OraclePrice(
        ts=ts, chain="local", feed="0xfeed", base=base, quote="USD", block=1, round_id=rid,
        price=price, updated_at=ts if updated_at is None else updated_at,
    )  # fmt: skip


BTC = Basket(
    name="BTC", quote="USDT", quote_aliases=("USDC", "USD"), assets=(BasketAsset(asset="BTC"),)
)


def equal_config(**kw: object) -> IndexConfig:
    base: dict[str, object] = {"baskets": (BTC,), "weighting": "equal", "max_venue_share": 1.0}
    base.update(kw)
    return IndexConfig(**base)  # type: ignore[arg-type]


def feed(index: BasketIndex, *events: Tick | DexPrice | OraclePrice) -> IndexPrice:
    out = None
    for e in events:
        out = index.update(e) or out
    assert out is not None
    return out


def reasons(p: IndexPrice) -> dict[str, str]:
    return {v.venue: v.reason for c in p.constituents for v in c.excluded}


# --- building blocks --------------------------------------------------------------------------


def test_weighted_median_hand_values() -> None:
    assert weighted_median([(100, 1), (101, 1), (102, 1)]) == 101
    # Even count, equal weights: halfway between the middle two.
    assert weighted_median([(100, 1), (101, 1), (102, 1), (110, 1)]) == 101.5
    # 105 holds 5/7 of the weight: it is the median.
    assert weighted_median([(100, 1), (101, 1), (105, 5)]) == 105
    assert weighted_median([(100, 1), (101, 1), (105, 5)][::-1]) == 105


def test_cap_shares() -> None:
    assert cap_shares([1, 1, 5], 1.0) == pytest.approx([1 / 7, 1 / 7, 5 / 7])
    # 5/7 is capped at 1/2; the other half is shared 1:1.
    assert cap_shares([1, 1, 5], 0.5) == pytest.approx([0.25, 0.25, 0.5])
    # A cap no split can meet: equal shares.
    assert cap_shares([1, 9], 0.4) == pytest.approx([0.5, 0.5])


# --- one asset ---------------------------------------------------------------------------------


def test_median_of_three_fresh_venues() -> None:
    idx = BasketIndex(BTC, equal_config())
    p = feed(idx, tick("a", 100), tick("b", 101), tick("c", 102))
    assert p.price == 101
    assert p.reason == ""
    (c,) = p.constituents
    assert [v.venue for v in c.used] == ["a", "b", "c"]
    assert [v.weight for v in c.used] == pytest.approx([1 / 3] * 3)
    assert c.excluded == ()


def test_liquidity_weighted_median_with_a_share_cap() -> None:
    # Top-of-book notional: (bid*qty + ask*qty)/2 = mid*qty -> weights 100, 101, 525.
    ticks = (tick("a", 100, qty=1), tick("b", 101, qty=1), tick("c", 105, qty=5))
    uncapped = feed(BasketIndex(BTC, IndexConfig(baskets=(BTC,), max_venue_share=1.0)), *ticks)
    assert uncapped.price == 105
    # Capped at one half, c holds 0.5 and a, b split the rest 100:101; cumulative weight
    # reaches one half exactly at b, so the median is halfway between b and c.
    capped = feed(BasketIndex(BTC, IndexConfig(baskets=(BTC,), max_venue_share=0.5)), *ticks)
    assert capped.price == pytest.approx(103)
    shares = {v.venue: v.weight for v in capped.constituents[0].used}
    assert shares == pytest.approx({"a": 0.5 * 100 / 201, "b": 0.5 * 101 / 201, "c": 0.5})


def test_cex_and_dex_venues_together() -> None:
    idx = BasketIndex(BTC, equal_config())
    p = feed(idx, tick("binance", 60000), tick("okx", 60010), dex("0xpool", 60030))
    assert p.price == 60010
    assert {v.venue for v in p.constituents[0].used} == {"binance", "okx", "uniswap_v3:0xpool"}


def test_stale_venue_is_excluded_with_its_reason() -> None:
    idx = BasketIndex(BTC, equal_config(max_age_s=10.0))
    p = feed(
        idx,
        tick("old", 90, ts=T0),
        tick("a", 100, ts=T0 + 15 * S),
        tick("b", 102, ts=T0 + 16 * S),
    )
    assert p.price == 101
    assert reasons(p) == {"old": "stale: older than 10s"}


def test_dex_prices_have_their_own_age_limit() -> None:
    idx = BasketIndex(BTC, equal_config(max_age_s=10.0, dex_max_age_s=60.0))
    p = feed(idx, dex("0xpool", 100, ts=T0), tick("a", 100.2, ts=T0 + 30 * S))
    assert p.price == pytest.approx(100.1)
    p = feed(idx, tick("a", 100.2, ts=T0 + 61 * S))
    assert p.price is None
    assert reasons(p) == {"uniswap_v3:0xpool": "stale: older than 60s"}


def test_outlier_is_excluded_by_mad() -> None:
    idx = BasketIndex(BTC, equal_config(mad_k=5.0, mad_floor_bps=10.0))
    p = feed(
        idx, tick("a", 100), tick("b", 100.1), tick("c", 99.9), tick("d", 100.05), tick("bad", 120)
    )
    # Median 100.05; |deviations| 0.05, 0.05, 0.15, 0, 19.95 -> MAD 0.05; limit
    # 5 * 1.4826 * 0.05 = 0.3707, 37.0 bps of 100.05. The rest: 99.9, 100, 100.05, 100.1 -> 100.025.
    assert p.price == pytest.approx(100.025)
    assert reasons(p) == {"bad": "outlier: 1994.0 bps from median 100.05 (limit 37.0 bps)"}


def test_mad_floor_keeps_a_tight_cluster() -> None:
    # Three identical prices make MAD 0; a venue 5 bps away is within the 10 bps floor.
    idx = BasketIndex(BTC, equal_config(mad_floor_bps=10.0))
    p = feed(idx, tick("a", 100), tick("b", 100), tick("c", 100), tick("d", 100.05))
    assert reasons(p) == {}
    assert len(p.constituents[0].used) == 4


def test_outlier_is_excluded_by_percentage_band() -> None:
    idx = BasketIndex(BTC, equal_config(outlier_method="band", band_bps=50.0))
    p = feed(idx, tick("a", 100), tick("b", 100.2), tick("c", 100.4), tick("far", 101))
    # Median 100.3; 101 is 69.8 bps away, over the 50 bps band.
    assert p.price == pytest.approx(100.2)
    assert reasons(p) == {"far": "outlier: 69.8 bps from median 100.3 (limit 50.0 bps)"}


def test_too_few_venues_means_no_price_said_plainly() -> None:
    idx = BasketIndex(BTC, equal_config(min_venues=2))
    p = feed(idx, tick("a", 100))
    assert p.price is None
    assert p.constituents[0].price is None
    assert p.reason == "BTC: 1 usable venue(s), need 2 (0 excluded)"


def test_exclusions_can_leave_too_few_venues() -> None:
    idx = BasketIndex(BTC, equal_config(min_venues=3, max_age_s=5.0))
    p = feed(
        idx, tick("old", 100, ts=T0), tick("a", 100, ts=T0 + 10 * S), tick("b", 101, ts=T0 + 10 * S)
    )
    assert p.price is None
    assert p.reason == "BTC: 2 usable venue(s), need 3 (1 excluded)"
    assert reasons(p) == {"old": "stale: older than 5s"}


def test_venue_turns_stale_as_event_time_moves_on() -> None:
    idx = BasketIndex(BTC, equal_config(max_age_s=10.0))
    p = feed(idx, tick("a", 100, ts=T0), tick("b", 102, ts=T0), tick("c", 104, ts=T0 + 9 * S))
    assert p.price == 102
    # Only c moves on; a and b pass their age limit at T0 + 10 s.
    p = feed(idx, tick("c", 104, ts=T0 + 11 * S))
    assert p.price is None
    assert reasons(p) == {"a": "stale: older than 10s", "b": "stale: older than 10s"}


def test_crossed_book_and_disabled_venue() -> None:
    crossed = Tick(
        ts=T0, venue="x", symbol="BTC/USDT", reason="book", bid=101, bid_qty=1, ask=100,
        ask_qty=1, mid=100.5, microprice=100.5, spread_bps=-99.5, imbalance=0,
    )  # fmt: skip
    idx = BasketIndex(BTC, equal_config(venue_weights={"off": 0.0}))
    p = feed(idx, crossed, tick("off", 100), tick("a", 100), tick("b", 102))
    assert p.price == 101
    assert reasons(p) == {
        "x": "crossed book: bid 101 > ask 100",
        "off": "disabled in config (venue weight 0)",
    }


def test_older_price_from_a_venue_is_ignored() -> None:
    idx = BasketIndex(BTC, equal_config())
    feed(idx, tick("a", 100, ts=T0 + S), tick("b", 102, ts=T0 + S))
    assert idx.update(tick("a", 50, ts=T0)) is None
    assert idx.price().price == 101


def test_other_quotes_and_derivatives_are_not_routed() -> None:
    idx = BasketIndex(BTC, equal_config())
    assert idx.update(tick("a", 90000, symbol="BTC/EUR")) is None
    assert idx.update(tick("a", 100, symbol="BTC/USDT:USDT")) is None
    assert idx.update(tick("a", 100, symbol="ETH/USDT")) is None
    # A USDC market counts for a USDT basket through the alias.
    assert idx.update(tick("a", 100, symbol="BTC/USDC")) is not None


# --- baskets and the oracle --------------------------------------------------------------------


def test_two_asset_basket_hand_computed() -> None:
    basket = Basket(
        name="MAJ", quote="USDT",
        assets=(BasketAsset(asset="BTC", weight=0.5), BasketAsset(asset="ETH", weight=10)),
    )  # fmt: skip
    idx = BasketIndex(basket, equal_config(baskets=(basket,)))
    p = feed(
        idx,
        tick("a", 60000), tick("b", 60100),
        tick("a", 3000, symbol="ETH/USDT"), tick("b", 3010, symbol="ETH/USDT"),
        tick("c", 3020, symbol="ETH/USDT"),
    )  # fmt: skip
    # BTC: (60000 + 60100) / 2 = 60050; ETH: 3010. 0.5 * 60050 + 10 * 3010 = 60125.
    assert p.price == pytest.approx(60125)
    assert [(c.asset, c.weight, c.price) for c in p.constituents] == [
        ("BTC", 0.5, 60050),
        ("ETH", 10, 3010),
    ]


def test_basket_without_price_when_one_asset_lacks_venues() -> None:
    basket = Basket(
        name="MAJ", quote="USDT",
        assets=(BasketAsset(asset="BTC", weight=1), BasketAsset(asset="ETH", weight=1)),
    )  # fmt: skip
    idx = BasketIndex(basket, equal_config(baskets=(basket,)))
    p = feed(idx, tick("a", 60000), tick("b", 60100), tick("a", 3000, symbol="ETH/USDT"))
    assert p.price is None
    assert p.constituents[0].price == 60050
    assert p.reason == "ETH: 1 usable venue(s), need 2 (0 excluded)"


def test_oracle_checks_but_does_not_move_the_index() -> None:
    idx = BasketIndex(BTC, equal_config(oracle_threshold_bps=100))
    p = feed(idx, tick("a", 100), tick("b", 102), oracle(100.5))
    assert p.price == 101
    assert p.oracle_price == 100.5
    assert p.oracle_deviation_bps == pytest.approx(0.5 / 100.5 * 1e4)
    assert not p.flagged
    p = feed(idx, oracle(98.0, rid=2))
    assert p.price == 101
    assert p.flagged
    assert p.oracle_deviation_bps == pytest.approx(3 / 98 * 1e4)
    assert p.reason == "index deviates 306.1 bps from the oracle (limit 100 bps)"


def test_stale_oracle_round_cannot_check() -> None:
    idx = BasketIndex(BTC, equal_config(oracle_max_age_s=3600))
    p = feed(idx, oracle(50.0, updated_at=T0 - 4000 * S, rid=7), tick("a", 100), tick("b", 102))
    assert p.price == 101
    assert not p.flagged
    assert p.oracle_price is None
    assert p.reason == "oracle check skipped: BTC oracle round 7 is 4000s old (limit 3600s)"


def test_snapshot_resumes_to_the_same_price() -> None:
    cfg = equal_config(oracle_threshold_bps=10)
    idx = BasketIndex(BTC, cfg)
    before = feed(idx, tick("a", 100), tick("b", 102), dex("0xp", 101.5), oracle(99))
    snap = idx.snapshot()
    resumed = BasketIndex(BTC, cfg, snap)
    assert resumed.price() == before
    assert msgspec.json.encode(resumed.price()) == msgspec.json.encode(before)


def test_router_sends_an_event_to_every_basket_holding_its_asset() -> None:
    eth = Basket(name="ETH", quote="USDT", assets=(BasketAsset(asset="ETH"),))
    both = Basket(
        name="MAJ", quote="USDT", quote_aliases=("USDC",),
        assets=(BasketAsset(asset="BTC"), BasketAsset(asset="ETH")),
    )  # fmt: skip
    router = BasketRouter(IndexConfig(baskets=(BTC, eth, both)))
    assert set(router.baskets_for(tick("a", 1, symbol="ETH/USDT"))) == {"ETH", "MAJ"}
    assert set(router.baskets_for(tick("a", 1, symbol="BTC/USDC"))) == {"BTC", "MAJ"}
    assert router.baskets_for(dex("0xp", 1, base="ETH", quote="USDC")) == ("MAJ",)
    assert router.baskets_for(tick("a", 1, symbol="SOL/USDT")) == ()


def test_config_from_toml(tmp_path) -> None:
    path = tmp_path / "svc.toml"
    path.write_text(
        """
[index]
min_venues = 3
outlier_method = "band"

[[index.baskets]]
name = "MAJ"
quote = "USDT"
assets = [{asset = "BTC", weight = 0.5}, {asset = "ETH", weight = 10}]
"""
    )
    cfg = load_index_config(path)
    assert cfg.min_venues == 3
    assert cfg.baskets[0].assets[1].weight == 10
    path.write_text("[index]\nmin_venue = 3\n")
    with pytest.raises(ValueError, match="min_venue"):
        load_index_config(path)
    assert [b.name for b in load_index_config(None).baskets] == ["BTC", "ETH"]
