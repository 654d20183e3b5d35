"""The demo under chaos, end to end: the all-in-one flow trades through the unmodified ccxt
client against the local exchange while the exchange mixes in, at a steady seeded rate, lost
answers, late requests, 429/418 bursts, venue expiries and duplicated, reordered and lost
private events. What the pipeline believes at the end must be what the venue holds."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from makerflow.demo.ground_truth import read_exchange_truth
from makerflow.demo.report import print_report
from makerflow.demo.runner import run_demo
from makerflow.schemas.events import Fill, ReconReport
from makerflow.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.slow

OPEN = ("new", "partially_filled")


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("chaos")
    # 30 s of replay, the last 6 s without market (the settle time); at 0.3 of the order
    # requests and private order reports, enough faults of several kinds for a short run.
    result = run_demo(out, seconds=30.0, grace_s=3.0, faults="chaos", chaos_rate=0.3, chaos_seed=1)
    return out, result.faults


def test_chaos_was_injected_and_reported(chaos_run, capsys):
    out, faults = chaos_run
    truth = read_exchange_truth(out)
    assert truth["state"]["faults_by_kind"] == faults
    assert sum(faults.values()) >= 5, faults
    assert len(faults) >= 3, faults
    assert truth["orders"], "the pipeline placed nothing on the exchange"
    summary = print_report(out)
    assert summary["faults_by_kind"] == faults
    printed = capsys.readouterr().out
    assert "faults injected by the exchange" in printed
    assert "the pipeline's view against the exchange's ground truth" in printed


def test_no_client_id_is_placed_twice_on_the_exchange(chaos_run):
    out, _ = chaos_run
    placed = Counter(o["client_order_id"] for o in read_exchange_truth(out)["orders"])
    assert {cid: n for cid, n in placed.items() if n > 1} == {}


def test_every_exchange_trade_is_in_fills_exactly_once(chaos_run):
    out, _ = chaos_run
    trades = {t["trade_id"]: t for t in read_exchange_truth(out)["trades"]}
    fills = read_jsonl(out / "fills.jsonl", Fill) if (out / "fills.jsonl").exists() else []
    seen = Counter(f.trade_id for f in fills)
    assert {tid: n for tid, n in seen.items() if n != 1} == {}, "fills delivered more than once"
    assert sorted(set(trades) - set(seen)) == [], "exchange trades the pipeline never saw"
    assert sorted(set(seen) - set(trades)) == [], "fills the exchange never made"
    for f in fills:
        t = trades[f.trade_id]
        assert (f.client_order_id, f.side, f.qty, f.fee_asset) == (
            t["client_order_id"],
            t["side"],
            t["qty"],
            t["fee_asset"],
        )


def test_the_pipelines_open_orders_are_the_exchanges(chaos_run):
    out, _ = chaos_run
    state = json.loads((out / "state.json").read_text())
    venue_open = {
        o["client_order_id"]: (o["side"], o["price"], o["qty"], o["filled_qty"])
        for o in read_exchange_truth(out)["orders"]
        if o["status"] in OPEN
    }
    believed = {
        cid: (o["side"], o["price"], o["qty"], o["filled"])
        for cid, o in state["open_orders"].items()
    }
    assert believed == venue_open


def test_inventory_is_the_exchanges_balance_change(chaos_run):
    out, _ = chaos_run
    state = json.loads((out / "state.json").read_text())
    balances = read_exchange_truth(out)["balances"]
    venue_change = {a: balances["end"][a] - balances["start"].get(a, 0.0) for a in balances["end"]}
    for asset in sorted(set(venue_change) | set(state["inventory_change"])):
        ours = state["inventory_change"].get(asset, 0.0)
        theirs = venue_change.get(asset, 0.0)
        assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-6), (asset, ours, theirs)
        assert math.isclose(
            state["inventory"].get(asset, 0.0), balances["end"].get(asset, 0.0), abs_tol=1e-6
        ), asset


def test_every_reconciliation_window_is_ok(chaos_run):
    out, _ = chaos_run
    reports = read_jsonl(out / "recon_reports.jsonl", ReconReport)
    assert reports, "no reconciliation window closed"
    assert [(r.asset, r.window_start, r.status) for r in reports if r.status != "OK"] == []
