"""The backtest dataflow: same bytes on every run and on 1 or 2 workers; the venue's reports
come back into quoting as the private stream's events do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from makerflow.backtest.run import FileInput, run_backtest
from makerflow.backtest.settings import BacktestConfig, load_backtest_config
from makerflow.operators.index import IndexConfig
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.schemas.events import Alert, Fill, OrderEvent, OrderIntent, ReconReport, RiskState
from makerflow.sinks.jsonl import read_jsonl
from tests.conftest import FIXTURES

SPOT = FIXTURES / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
USDM = FIXTURES / "md" / "binance_usdm_btcusdt_20240808_head2500.gz"


def hashes(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.jsonl"))}


def two_markets() -> BacktestConfig:
    """Spot and USDT-M BTC quoted together; the spot quotes off an index of both venues,
    so the futures' ticks cross over to the spot's key."""
    params = QuotingParams(warmup_s=2.0, sigma_initial=3.0, min_quote_lifetime_s=0.2)
    return BacktestConfig(
        index=IndexConfig(include_derivatives=True, min_venues=1),
        quoting=QuotingConfig(
            markets=(
                MarketConfig(
                    venue="binance",
                    symbol="BTC/USDT",
                    tick_size=0.01,
                    lot_size=0.00001,
                    min_qty=0.00001,
                    min_notional=5.0,
                    index_basket="BTC",
                    params={"fair_price": "index"},
                ),
                MarketConfig(
                    venue="binanceusdm",
                    symbol="BTC/USDT:USDT",
                    tick_size=0.1,
                    lot_size=0.001,
                    min_qty=0.001,
                    min_notional=5.0,
                ),
            ),
            defaults=params,
        ),
    )


def test_a_rerun_and_two_workers_write_the_same_bytes(tmp_path: Path) -> None:
    cfg = two_markets()
    inp = FileInput((str(SPOT), str(USDM)))
    first = run_backtest(inp, cfg, tmp_path / "a")
    again = run_backtest(inp, cfg, tmp_path / "b")
    two = run_backtest(inp, cfg, tmp_path / "c", workers=2)
    h = hashes(tmp_path / "a")
    assert h == hashes(tmp_path / "b") == hashes(tmp_path / "c")
    # The run did something worth comparing: both markets quoted and filled.
    fills: list[Fill] = read_jsonl(tmp_path / "a" / "fills.jsonl", Fill)
    assert {f.key for f in fills} == {"binance:BTC/USDT", "binanceusdm:BTC/USDT:USDT"}
    assert first.counts == again.counts == two.counts
    assert first.counts["index"] > 0 and first.counts["ticks"] > 1000


def test_an_index_venue_that_is_not_quoted_is_written_once_by_the_market_quoted_off_it(
    tmp_path: Path,
) -> None:
    both = two_markets()
    spot_only = msgspec.structs.replace(
        both, quoting=msgspec.structs.replace(both.quoting, markets=both.quoting.markets[:1])
    )
    inp = FileInput((str(SPOT), str(USDM)))
    run_backtest(inp, both, tmp_path / "both")
    one = run_backtest(inp, spot_only, tmp_path / "one", workers=2)
    usdm = "binanceusdm:BTC/USDT:USDT"

    def ticks_of(d: Path) -> list[bytes]:
        lines = (d / "ticks.jsonl").read_bytes().splitlines()
        return [x for x in lines if b'"binanceusdm"' in x]

    # The futures' ticks (computed by the spot's engine for its index) appear once, and are
    # the ticks the futures' own engine writes when it is quoted.
    assert ticks_of(tmp_path / "one") == ticks_of(tmp_path / "both")
    assert ticks_of(tmp_path / "one")
    fills: list[Fill] = read_jsonl(tmp_path / "one" / "fills.jsonl", Fill)
    assert fills and all(f.key != usdm for f in fills)
    assert one.counts["index"] > 0


def test_the_venues_reports_reach_the_quoter_as_private_stream_events(tmp_path: Path) -> None:
    cfg = load_backtest_config(
        None,
        [
            ("quoting.defaults.warmup_s", 2.0),
            ("quoting.defaults.sigma_initial", 3.0),
            ("venue.entry_latency_ms", 20.0),
            ("venue.report_latency_ms", 7.0),
        ],
    )
    out = tmp_path / "out"
    run_backtest(FileInput((str(SPOT),)), cfg, out)
    intents: list[OrderIntent] = read_jsonl(out / "intents.jsonl", OrderIntent)
    events: list[OrderEvent] = read_jsonl(out / "order_events.jsonl", OrderEvent)
    fills: list[Fill] = read_jsonl(out / "fills.jsonl", Fill)
    placed = {i.client_order_id: i for i in intents if i.action == "place"}
    assert placed and fills
    acks = {e.client_order_id: e for e in events if e.status == "ack"}
    for cid, ack in acks.items():
        # The venue acts when the order reaches it, one entry latency after it was sent.
        assert ack.ts >= placed[cid].ts + 20_000_000
    for f in fills:
        assert f.client_order_id in acks and f.ts >= acks[f.client_order_id].ts
    # The quoter heard the fills: its intents after the first fill are priced off an
    # inventory, so the ladder it sends differs from the symmetric one, and every fill's
    # order leaves the quoter's live set (no cancel is sent for a filled order).
    filled = {f.client_order_id for f in fills if f.client_order_id}
    done = {e.client_order_id for e in events if e.status == "filled"}
    cancels_after_fill = [
        i
        for i in intents
        if i.action == "cancel"
        and i.client_order_id in done
        and any(
            e.client_order_id == i.client_order_id and e.status == "filled" and e.ts + 7e6 <= i.ts
            for e in events
        )
    ]
    assert filled and cancels_after_fill == []


def test_a_queue_holds_fills_back_that_the_front_of_the_line_gets(tmp_path: Path) -> None:
    # Quotes at the touch, where the queue is: a fixed spread of zero, no minimum spread
    # (the ladder keeps post-only quotes from crossing, so they join the best levels).
    volume = {}
    for model in ("front", "proportional", "risk_averse"):
        cfg = load_backtest_config(
            None,
            [
                ("quoting.defaults.warmup_s", 2.0),
                ("quoting.defaults.sigma_initial", 3.0),
                ("quoting.defaults.model", "fixed_spread"),
                ("quoting.defaults.half_spread_bps", 0.0),
                ("quoting.defaults.min_spread_bps", 0.0),
                ("venue.queue_model", model),
            ],
        )
        res = run_backtest(FileInput((str(SPOT),)), cfg, tmp_path / model)
        assert res.figures["orders"] > 0
        volume[model] = res.figures["volume"]
    assert volume["proportional"] < 0.8 * volume["front"]
    assert volume["risk_averse"] < 0.8 * volume["front"]


def test_risk_hears_the_fills_halts_the_market_and_the_quoter_stops(tmp_path: Path) -> None:
    cfg = load_backtest_config(
        None,
        [
            ("quoting.defaults.warmup_s", 2.0),
            ("quoting.defaults.sigma_initial", 3.0),
            ("risk.default_market_limits.max_position", 0.0015),
        ],
    )
    out = tmp_path / "halt"
    run_backtest(FileInput((str(SPOT),)), cfg, out)
    states: list[RiskState] = read_jsonl(out / "risk_states.jsonl", RiskState)
    alerts: list[Alert] = read_jsonl(out / "alerts.jsonl", Alert)
    intents: list[OrderIntent] = read_jsonl(out / "intents.jsonl", OrderIntent)
    [halt] = [s for s in states if s.status == "HALTED" and not s.heartbeat]
    assert halt.scope == "market:binance:BTC/USDT" and "position" in " ".join(halt.reasons)
    assert any(a.name == "KillSwitchEngaged" for a in alerts)
    kill = [i for i in intents if i.action == "cancel_all" and "kill switch" in i.reason]
    assert kill and kill[0].ts == halt.ts
    assert not [i for i in intents if i.action == "place" and i.ts > halt.ts]


def test_reconciliation_agrees_with_the_venues_balances(tmp_path: Path) -> None:
    cfg = load_backtest_config(
        None,
        [
            ("quoting.defaults.warmup_s", 2.0),
            ("quoting.defaults.sigma_initial", 3.0),
            ("recon.window_s", 10.0),
            ("recon.grace_s", 0.0),
        ],
    )
    out = tmp_path / "recon"
    run_backtest(FileInput((str(SPOT),)), cfg, out)
    reports: list[ReconReport] = read_jsonl(out / "recon_reports.jsonl", ReconReport)
    assert {r.asset for r in reports} == {"BTC", "USDT"}
    assert sum(r.fills_matched for r in reports) > 0
    assert all(r.status == "OK" for r in reports), [r.reason for r in reports if r.reason]


def test_the_venue_charges_the_maker_fee_the_quoter_is_told_unless_set(tmp_path: Path) -> None:
    base = [("quoting.defaults.warmup_s", 2.0), ("quoting.defaults.sigma_initial", 3.0)]
    told = run_backtest(
        FileInput((str(SPOT),)),
        load_backtest_config(None, [*base, ("quoting.defaults.maker_fee_bps", -1.0)]),
        tmp_path / "told",
    )
    fills: list[Fill] = read_jsonl(tmp_path / "told" / "fills.jsonl", Fill)
    maker = [f for f in fills if f.liquidity == "maker"]
    assert maker and all(abs(f.fee - (-1e-4) * f.price * f.qty) < 1e-9 for f in maker)
    assert told.figures["fees"] < 0  # a rebate
    run_backtest(
        FileInput((str(SPOT),)),
        load_backtest_config(None, [*base, ("venue.maker_fee", 0.0003)]),
        tmp_path / "set",
    )
    fills = read_jsonl(tmp_path / "set" / "fills.jsonl", Fill)
    assert all(abs(f.fee - 3e-4 * f.price * f.qty) < 1e-9 for f in fills if f.liquidity == "maker")
