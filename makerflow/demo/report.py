"""The demo's summary: polars over the JSONL streams the run wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl


def load(out_dir: Path, name: str) -> pl.DataFrame:
    path = out_dir / f"{name}.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return pl.DataFrame()
    return pl.read_ndjson(path, infer_schema_length=None)


def summarize(frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """What a trader wants to know after the run, as plain numbers (a pure function)."""
    fills = frames.get("fills", pl.DataFrame())
    ticks = frames.get("ticks", pl.DataFrame())
    recon = frames.get("recon_reports", pl.DataFrame())
    intents = frames.get("intents", pl.DataFrame())
    execs = frames.get("executions", pl.DataFrame())
    index = frames.get("index", pl.DataFrame())
    states = frames.get("risk_states", pl.DataFrame())
    out: dict[str, Any] = {name: df.height for name, df in frames.items()}
    if fills.height:
        signed = fills.select(
            pl.when(pl.col("side") == "buy").then(pl.col("qty")).otherwise(-pl.col("qty")).sum()
        ).item()
        cash = fills.select(
            pl.when(pl.col("side") == "buy")
            .then(-pl.col("qty") * pl.col("price"))
            .otherwise(pl.col("qty") * pl.col("price"))
            .sum()
        ).item()
        out["fills_buy"] = fills.filter(pl.col("side") == "buy").height
        out["fills_sell"] = fills.filter(pl.col("side") == "sell").height
        out["inventory_btc"] = float(signed)
        if ticks.height:
            last_mid = float(ticks["mid"][-1])
            out["pnl_usdt_marked"] = float(cash + signed * last_mid - fills["fee"].sum())
    if intents.height:
        out["intents_by_action"] = dict(intents.group_by("action").len().sort("action").iter_rows())
    if execs.height:
        out["executions_by_status"] = dict(
            execs.group_by("status").len().sort("status").iter_rows()
        )
    if recon.height:
        out["recon_by_status"] = dict(recon.group_by("status").len().sort("status").iter_rows())
    if index.height:
        priced = index.filter(pl.col("price").is_not_null())
        out["index_priced"] = priced.height
        for basket, price in (
            priced.group_by("basket", maintain_order=True).agg(pl.col("price").last()).iter_rows()
        ):
            out[f"index_last_{basket}"] = float(price)
    if states.height:
        out["halts"] = states.filter(pl.col("status") == "HALTED").height
    return out


def print_report(out_dir: Path) -> dict[str, Any]:
    names = [p.stem for p in sorted(out_dir.glob("*.jsonl"))]
    frames = {n: load(out_dir, n) for n in names}
    summary = summarize(frames)
    print("\nstream                 events")
    for n in names:
        print(f"  {n:<20} {frames[n].height:>8}")
    print("\nsummary")
    for k, v in summary.items():
        if k not in names:
            print(f"  {k:<20} {v}")
    state_path = out_dir / "exchange_state.json"
    if state_path.exists():
        by_kind = json.loads(state_path.read_text()).get("faults_by_kind") or {}
        summary["faults_by_kind"] = by_kind
        print("\nfaults injected by the exchange")
        for kind, n in sorted(by_kind.items()):
            print(f"  {kind:<20} {n:>8}")
        if not by_kind:
            print("  none")
    if state_path.exists() and (out_dir / "state.json").exists():
        checks = _venue_checks(out_dir)
        summary["venue_checks"] = checks
        print("\nthe pipeline's view against the exchange's ground truth")
        for name, found in checks.items():
            print(f"  {name:<28} {found or 'ok'}")
    print(f"\nevery stream is in {out_dir}/<name>.jsonl; the exchange's ground truth in")
    print(f"{out_dir}/exchange_*.json[l], the pipeline's final view in {out_dir}/state.json")
    return summary


def _venue_checks(out_dir: Path) -> dict[str, Any]:
    from makerflow.demo.ground_truth import compare_with_venue, read_exchange_truth

    fills = load(out_dir, "fills")
    trade_ids = [str(t) for t in fills["trade_id"]] if fills.height else []
    view = json.loads((out_dir / "state.json").read_text())
    return compare_with_venue(read_exchange_truth(out_dir), view, trade_ids)
