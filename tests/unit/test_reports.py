"""The report's figures against a small run computed by hand.

Ticks (mid): 0 s 100, 1 s 101, 2 s 102, 3 s 99, 20 s 98, 70 s 100. Fills (fees in USDT):

* 0.5 s buy 2 @ 99.5, fee 0.2: position 2 at 99.5; mid 100, spread captured +0.5;
  mid 1 s later 101 (markout +1), 10 s later 99 (-1), 60 s later 98 (-2).
* 2.5 s sell 1 @ 102.5, fee 0.1: realizes 1 * (102.5 - 99.5) = 3; position 1 at 99.5; mid 102,
  spread captured +0.5; markouts: 1 s -> 99 (+3), 10 s -> 99 (+3), 60 s -> 98 (+4).
* 21 s sell 2 @ 98.5, fee 0.2: closes 1 at -1 (realized 2), opens -1 at 98.5; mid 98, spread
  captured +0.5; markouts 0 at 1 s and 10 s; 60 s is past the last tick: unknown.

End: position -1 at 98.5 marked at 100: unrealized -1.5; fees 0.5; total 2 - 0.5 - 1.5 = 0.
Total PnL after each event: 0, 0.8, 2.8, 4.8, 5.2, 2.2, 1.2, 2.0, 0.0 -> max drawdown 5.2.
"""

from __future__ import annotations

import msgspec
import polars as pl
import pytest

from makerflow.reports import compute, format_table
from makerflow.reports.frames import quotes_frame
from makerflow.reports.html import thin
from makerflow.reports.pnl import max_drawdown
from tests.report_support import FILLS, INTENTS, TICKS, fill, frame, hand_run, ladder, tick, ts

M = "binance:BTC/USDT"


@pytest.fixture(scope="module")
def report():
    return compute(hand_run())


def test_pnl_of_a_known_fill_sequence(report):
    s = report.headline()[M]
    assert s["realized_pnl"] == pytest.approx(2.0)
    assert s["fees"] == pytest.approx(0.5)
    assert s["unrealized_pnl"] == pytest.approx(-1.5)
    assert s["total_pnl"] == pytest.approx(0.0, abs=1e-12)
    assert s["final_inventory"] == pytest.approx(-1.0)
    assert (s["min_inventory"], s["max_inventory"]) == (pytest.approx(-1.0), pytest.approx(2.0))
    assert (s["fills"], s["buys"], s["sells"]) == (3, 1, 2)
    assert s["volume"] == pytest.approx(5.0)
    assert s["notional"] == pytest.approx(199 + 102.5 + 197)


def test_pnl_timeline_and_drawdown(report):
    totals = report.pnl.filter(pl.col("market") == M)["total"].to_list()
    assert totals == pytest.approx([0, 0.8, 2.8, 4.8, 5.2, 2.2, 1.2, 2.0, 0.0], abs=1e-9)
    assert report.headline()[M]["max_drawdown"] == pytest.approx(5.2)
    assert report.pnl["drawdown"].max() == pytest.approx(5.2)
    positions = report.pnl["position"].to_list()
    assert positions == pytest.approx([0, 2, 2, 2, 1, 1, 1, -1, -1])


def test_drawdown_counts_from_zero_and_from_each_peak():
    assert max_drawdown(pl.Series([-1.0, -3.0, -2.0])) == pytest.approx(3.0)
    assert max_drawdown(pl.Series([1.0, 4.0, 2.0, 5.0, 1.5])) == pytest.approx(3.5)
    assert max_drawdown(pl.Series([], dtype=pl.Float64)) == 0.0


def test_markouts_of_known_fills(report):
    m = report.markouts.sort("ts")
    assert m["spread_captured"].to_list() == pytest.approx([0.5, 0.5, 0.5])
    assert m["markout_1s"].to_list() == pytest.approx([1.0, 3.0, 0.0])
    assert m["markout_10s"].to_list() == pytest.approx([-1.0, 3.0, 0.0])
    assert m["markout_60s"].to_list()[:2] == pytest.approx([-2.0, 4.0])
    assert m["markout_60s"][2] is None  # past the last tick: unknown, not zero
    assert m["edge_1s"].to_list() == pytest.approx([1.5, 3.5, 0.5])
    s = report.headline()[M]
    assert s["markout_1s"] == pytest.approx((2 * 1 + 3 + 0) / 5)  # quantity-weighted
    assert s["markout_10s"] == pytest.approx((-2 + 3 + 0) / 5)
    assert s["markout_60s_bps"] == pytest.approx((2 * -200 + 4 / 102 * 1e4) / 3)
    assert s["spread_captured_bps"] == pytest.approx(
        (2 * 50 + 0.5 / 102 * 1e4 + 2 * 0.5 / 98 * 1e4) / 5
    )


def test_markout_curve(report):
    c = report.markout_curve.filter(pl.col("side") == "all").sort("horizon_s")
    at = dict(zip(c["horizon_s"].to_list(), c["markout"].to_list(), strict=True))
    assert at[0.0] == 0.0
    assert at[1.0] == pytest.approx(1.0)
    assert at[60.0] == pytest.approx(0.0)  # (2 * -2 + 4) / 3
    buys = report.markout_curve.filter((pl.col("side") == "buy") & (pl.col("horizon_s") == 10.0))
    assert buys["markout"].item() == pytest.approx(-1.0)
    assert c.filter(pl.col("horizon_s") == 60.0)["fills"].item() == 2


def test_fill_ratio_and_order_to_trade(report):
    s = report.headline()[M]
    assert s["orders_placed"] == 4  # c1 redelivered counts once
    assert s["cancels"] == 1
    assert s["fill_ratio"] == pytest.approx(3 / 4)
    assert s["filled_order_share"] == pytest.approx(3 / 4)
    assert s["order_to_trade"] == pytest.approx((4 + 1) / 3)


def test_fee_paid_in_base_shrinks_the_position_and_is_charged_at_the_fill_price():
    r = compute(
        {
            "ticks": frame([tick(0, 100), tick(5, 110)]),
            "fills": frame([fill(1, "buy", 1.0, 100.0, 0.001, "t1", "c1", fee_asset="BTC")]),
        }
    )
    s = r.headline()[M]
    assert s["final_inventory"] == pytest.approx(0.999)
    assert s["fees"] == pytest.approx(0.1)
    assert s["total_pnl"] == pytest.approx(0.999 * 110 - 100)  # cash + position at the mid


def test_duplicated_and_reordered_events_give_the_same_report(report):
    again = compute(
        {
            "ticks": frame(list(reversed(TICKS)) + TICKS[:2]),
            "fills": frame([FILLS[2], FILLS[0], FILLS[1], FILLS[0]]),
            "intents": frame(list(reversed(INTENTS)) + INTENTS),
            "ladders": hand_run()["ladders"],
        }
    )
    assert again.summary.equals(report.summary)
    assert again.pnl.equals(report.pnl)
    assert again.markouts.equals(report.markouts)


def test_quotes_are_our_best_bid_and_ask_and_null_when_not_quoting():
    q = quotes_frame(frame([ladder(0, [99.0, 98.5], [101.0, 101.5]), ladder(1, [99.5], [])]))
    assert q["bid"].to_list() == [99.0, 99.5]
    assert q["ask"].to_list() == [101.0, None]
    empty = quotes_frame(frame([ladder(0, [], [])]))
    assert empty["bid"].to_list() == [None] and empty["ask"].to_list() == [None]


def test_a_run_without_fills_or_orders_reports_zero_and_unknowns():
    r = compute({"ticks": frame(TICKS)})
    s = r.headline()[M]
    assert (s["fills"], s["total_pnl"], s["max_drawdown"], s["orders_placed"]) == (0, 0, 0, None)
    assert s["markout_1s"] is None
    assert "n/a" in format_table(r)
    assert compute({}).summary.is_empty()


def test_printed_table_formats_for_people(report):
    text = format_table(report)
    assert M in text
    assert "75.00%" in text  # fill ratio
    assert "5.20" in text  # max drawdown
    markout_1s_bps = (2 * 1 / 100 * 1e4 + 3 / 102 * 1e4) / 5
    assert f"{markout_1s_bps:+.2f} bps" in text
    assert "60.0 s" not in text and "70.0 s" in text  # duration from the first to last event


def test_thinning_keeps_the_last_row_of_each_time_slice():
    df = pl.DataFrame({"ts": list(range(10_000)), "v": list(range(10_000))})
    out = thin(df, max_points=100)
    assert 90 <= out.height <= 101
    assert out["v"][-1] == 9_999
    assert thin(df.head(50), max_points=100).height == 50


def test_rejects_count_once_whether_the_sink_or_the_venue_reported_them(report):
    from makerflow.schemas.events import OrderEvent

    def event(coid: str, status: str, reason: str = "") -> OrderEvent:
        return OrderEvent(
            ts=ts(22), venue="binance", symbol="BTC/USDT", client_order_id=coid,
            status=status, side="buy", price=97.5, qty=1.0, reason=reason,
        )  # type: ignore[arg-type]  # fmt: skip

    r = compute(
        {
            **hand_run(),
            "executions": frame([event("c4", "rejected", "post-only"), event("c1", "ack")]),
            "order_events": frame([event("c4", "rejected"), event("c1", "ack")]),
        }
    )
    s = r.headline()[M]
    assert s["rejected"] == 1
    assert s["orders_placed"] == 4  # still the intents


def test_each_market_is_marked_and_marked_out_against_its_own_mid(report):
    other = {"venue": "binanceusdm", "symbol": "BTC/USDT:USDT"}
    ticks = [t for t in TICKS] + [
        msgspec.structs.replace(t, venue=other["venue"], symbol=other["symbol"], mid=t.mid + 50)
        for t in TICKS
    ]
    fills = [*FILLS, msgspec.structs.replace(FILLS[0], **other, trade_id="o1", price=150.0)]
    r = compute({"ticks": frame(ticks), "fills": frame(fills)})
    h = r.headline()
    assert set(h) == {M, "binanceusdm:BTC/USDT:USDT"}
    assert h[M]["total_pnl"] == pytest.approx(report.headline()[M]["total_pnl"], abs=1e-12)
    o = h["binanceusdm:BTC/USDT:USDT"]
    assert o["spread_captured"] == pytest.approx(0.0)  # bought at its own mid, 150
    assert o["markout_1s"] == pytest.approx(1.0)  # 150 -> 151 on its own ticks
    assert o["final_inventory"] == pytest.approx(2.0)
    assert o["total_pnl"] == pytest.approx(2 * (150 - 150) - 0.2)  # marked at its last mid


def test_table_starts_with_the_first_event_time_in_utc(report):
    assert "2024-08-09 00:00:00.000" in format_table(report)
