"""The demo's summary: what each part of the pipeline did, formatted for people.

:func:`summarize` is pure (polars over the frames a run wrote); :func:`format_summary` turns
it into text; :func:`print_report` reads a run directory, prints the summary and the venue
check, and writes the HTML report with :mod:`makerflow.reports` (the backtests' report).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

logger = logging.getLogger(__name__)

TRADED = ("binance", "BTC/USDT")
LOT_DECIMALS = 5
"""BTC/USDT's lot on the demo exchange is 0.00001 BTC."""
NS = 1_000_000_000


def load(out_dir: Path, name: str) -> pl.DataFrame:
    path = out_dir / f"{name}.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return pl.DataFrame()
    return pl.read_ndjson(path, infer_schema_length=None)


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    if not df.height or col not in df.columns:
        return {}
    return {str(k): int(v) for k, v in df.group_by(col).len().sort(col).iter_rows()}


@dataclass
class Summary:
    """The run's figures (plain values); ``sections`` is the printed form."""

    values: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _index_section(index: pl.DataFrame, v: dict[str, Any]) -> list[str]:
    if not index.height:
        return ["no index prices"]
    lines = []
    priced = index.filter(pl.col("price").is_not_null())
    v["index_priced"] = priced.height
    used: dict[str, int] = {}
    excluded: dict[tuple[str, str], int] = {}
    for constituents in index["constituents"].to_list():
        for c in constituents:
            for u in c["used"]:
                name = u["venue"].split(":")[0]
                used[name] = used.get(name, 0) + 1
            for x in c["excluded"]:
                reason = x["reason"].split(":")[0]
                key = (x["venue"].split(":")[0], reason)
                excluded[key] = excluded.get(key, 0) + 1
    v["index_venues_used"] = sorted(used)
    v["index_excluded"] = {f"{a} ({b})": n for (a, b), n in sorted(excluded.items())}
    for basket, price, oracle in (
        priced.group_by("basket", maintain_order=True)
        .agg(pl.col("price").last(), pl.col("oracle_price").last())
        .iter_rows()
    ):
        v[f"index_last_{basket}"] = float(price)
        check = f", oracle {oracle:,.2f}" if oracle is not None else ""
        lines.append(
            f"{basket} priced {priced.height:,} of {index.height:,} times, last {price:,.2f}{check}"
        )
    flagged = int(index["flagged"].sum()) if "flagged" in index.columns else 0
    v["index_flagged"] = flagged
    lines.append("venues used (times): " + ", ".join(f"{k} {n:,}" for k, n in sorted(used.items())))
    lines.append(
        "excluded (times): "
        + (", ".join(f"{k} {n:,}" for k, n in v["index_excluded"].items()) or "none")
    )
    lines.append(f"flagged against the oracle: {flagged:,}")
    return lines


def _risk_section(states: pl.DataFrame, alerts: pl.DataFrame, v: dict[str, Any]) -> list[str]:
    lines = []
    changes = (
        states.filter(~pl.col("heartbeat"))
        if states.height and "heartbeat" in states.columns
        else states
    )
    halts = changes.filter(pl.col("status") == "HALTED") if changes.height else changes
    v["halts"] = halts.height
    v["halt_ts"] = int(halts.select(pl.col("since").min()).item()) if halts.height else None
    v["halted_scopes"] = sorted(set(halts["scope"].to_list())) if halts.height else []
    last = (
        states.group_by("scope").agg(pl.col("status").last()).sort("scope")
        if states.height
        else states
    )
    v["risk_final"] = dict(last.iter_rows()) if last.height else {}
    lines.append(
        "final: " + (", ".join(f"{s} {st}" for s, st in v["risk_final"].items()) or "none")
    )
    for row in halts.iter_rows(named=True):
        lines.append(f"HALTED {row['scope']}: {'; '.join(row['reasons'])}")
    v["alerts_by_name"] = _counts(alerts, "name")
    lines.append(
        "alerts: " + (", ".join(f"{k} {n}" for k, n in v["alerts_by_name"].items()) or "none")
    )
    v["kill_switch"] = []
    if alerts.height:
        flat = alerts.filter(pl.col("name").is_in(["KillSwitchFlat", "KillSwitchCancelFailed"]))
        for message in flat["message"].to_list()[:3]:
            v["kill_switch"].append(message)
            lines.append(f"kill switch: {message}")
    return lines


def _orders_section(frames: dict[str, pl.DataFrame], v: dict[str, Any]) -> list[str]:
    intents = frames.get("intents", pl.DataFrame())
    execs = frames.get("executions", pl.DataFrame())
    events = frames.get("order_events", pl.DataFrame())
    v["intents_by_action"] = _counts(intents, "action")
    # One process: the sink's verdicts are their own stream; as services they share
    # orders.events with the private stream's reports.
    v["executions_by_status"] = _counts(execs if execs.height else events, "status")
    final = (
        events.group_by("client_order_id").agg(pl.col("status").last())
        if events.height
        else pl.DataFrame()
    )
    v["orders_by_outcome"] = _counts(final, "status")
    halt = v.get("halt_ts")
    late = (
        intents.filter((pl.col("action") == "place") & (pl.col("ts") > halt))
        if halt is not None and intents.height
        else pl.DataFrame()
    )
    late_ids = set(late["client_order_id"].to_list()) if late.height else set()
    v["orders_after_halt"] = (
        execs.filter(
            pl.col("client_order_id").is_in(list(late_ids)) & (pl.col("status") != "rejected")
        ).height
        if late_ids and execs.height
        else 0
    )

    def join(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {n:,}" for k, n in d.items()) or "none"

    lines = [
        f"intents: {join(v['intents_by_action'])}",
        f"venue answers: {join(v['executions_by_status'])}",
        f"orders by outcome (last report): {join(v['orders_by_outcome'])}",
    ]
    if halt is not None:
        lines.append(
            f"after the halt: {len(late_ids)} places asked, {v['orders_after_halt']} reached"
            " the venue"
        )
    return lines


def summarize(frames: dict[str, pl.DataFrame]) -> Summary:
    """What each part of the run did, as values and printable sections (a pure function)."""
    v: dict[str, Any] = {name: df.height for name, df in frames.items()}
    sections: list[tuple[str, list[str]]] = []
    ticks = frames.get("ticks", pl.DataFrame())
    if ticks.height:
        by_market = ticks.group_by(["venue", "symbol"]).len().sort(["venue", "symbol"]).iter_rows()
        sections.append(("ticks", [", ".join(f"{ven} {sym} {n:,}" for ven, sym, n in by_market)]))
        lo, hi = ticks.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
        span = (int(hi) - int(lo)) / NS
        sections[-1][1].append(f"{ticks.height:,} in {span:.0f} s of market time")
    sections.append(("index", _index_section(frames.get("index", pl.DataFrame()), v)))
    sections.append(
        (
            "risk",
            _risk_section(
                frames.get("risk_states", pl.DataFrame()), frames.get("alerts", pl.DataFrame()), v
            ),
        )
    )
    ladders = frames.get("ladders", pl.DataFrame())
    sections.append(("quotes", [f"{ladders.height:,} ladders quoted"]))
    sections.append(("orders", _orders_section(frames, v)))
    fills = frames.get("fills", pl.DataFrame())
    fill_lines = []
    if fills.height:
        fills = fills.unique("trade_id", keep="first", maintain_order=True)
        sign = pl.when(pl.col("side") == "buy").then(1.0).otherwise(-1.0)
        # The venue takes its fee in the asset received: BTC on a buy, USDT on a sell.
        fee_btc = float(fills.filter(pl.col("fee_asset") == "BTC")["fee"].sum())
        fee_usdt = float(fills.filter(pl.col("fee_asset") == "USDT")["fee"].sum())
        inventory = float(fills.select((sign * pl.col("qty")).sum()).item()) - fee_btc
        cash = float(fills.select((-sign * pl.col("qty") * pl.col("price")).sum()).item())
        cash -= fee_usdt
        v["fills_buy"] = fills.filter(pl.col("side") == "buy").height
        v["fills_sell"] = fills.filter(pl.col("side") == "sell").height
        v["inventory_btc"] = round(inventory, LOT_DECIMALS)
        traded = ticks.filter((pl.col("venue") == TRADED[0]) & (pl.col("symbol") == TRADED[1]))
        volume = float(fills["qty"].sum())
        fill_lines.append(
            f"{fills.height} ({v['fills_buy']} buys, {v['fills_sell']} sells),"
            f" {volume:.{LOT_DECIMALS}f} BTC"
        )
        fill_lines.append(f"inventory {inventory:+.{LOT_DECIMALS}f} BTC")
        if traded.height:
            mid = float(traded["mid"][-1])
            fees = fee_usdt + fee_btc * mid
            fill_lines[0] += f", fees {fees:,.2f} USDT"
            pnl = cash + inventory * mid
            v["pnl_usdt_marked"] = round(pnl, 2)
            notional = float((fills["qty"] * fills["price"]).sum())
            fill_lines.append(
                f"PnL {pnl:+,.2f} USDT after fees, marked at {mid:,.2f}"
                f" ({pnl / notional:+.3%} of the {notional:,.2f} USDT traded)"
            )
    else:
        fill_lines.append("none")
    sections.append(("fills", fill_lines))
    recon = frames.get("recon_reports", pl.DataFrame())
    if recon.height:
        latest = recon.sort("version").group_by(["account", "asset", "window_start"]).last()
        v["recon_by_status"] = _counts(latest, "status")
        v["recon_windows"] = latest.height
    else:
        v["recon_by_status"], v["recon_windows"] = {}, 0
    ok = v["recon_by_status"].get("OK", 0)
    bad = v["recon_windows"] - ok
    sections.append(
        (
            "reconciliation",
            [
                f"{v['recon_windows']} windows (asset x 30 s): {ok} OK, {bad} BREAK"
                + (f" {v['recon_by_status']}" if bad else "")
            ],
        )
    )
    return Summary(values=v, sections=sections)


def format_summary(summary: Summary) -> str:
    width = max(len(name) for name, _ in summary.sections)
    out = []
    for name, lines in summary.sections:
        for i, line in enumerate(lines):
            out.append(f"  {(name if i == 0 else ''):<{width}}  {line}")
    return "\n".join(out)


def print_report(out_dir: Path, *, html: bool = True) -> Summary:
    """Print what the run in ``out_dir`` did and where its report is; write the report."""
    names = [p.stem for p in sorted(out_dir.glob("*.jsonl"))]
    frames = {n: load(out_dir, n) for n in names}
    summary = summarize(frames)
    print("\nwhat each part did")
    print(format_summary(summary))
    services_path = out_dir / "services.json"
    if services_path.exists():
        services = json.loads(services_path.read_text())
        summary.values["services"] = services["services"]
        print("\nservices (one bytewax.run process each)")
        for svc in services["services"]:
            served = "served /metrics" if svc["served_metrics"] else "NO /metrics"
            code = svc["exit_code"]
            # The Bytewax runner ends on Ctrl-C (SIGINT) with status 1; -9 was a SIGKILL.
            how = "killed" if code is not None and code < 0 else "stopped by SIGINT"
            print(f"  {svc['name']:<12} :{svc['metrics_port']:<6} {served}, {how}")
        fired = services.get("prometheus_alerts")
        summary.values["prometheus_alerts"] = fired
        if fired is not None:
            names = sorted({a.get("alertname", "?") for a in fired})
            print("  prometheus alerts that fired: " + (", ".join(names) or "none"))
    state_path = out_dir / "exchange_state.json"
    if state_path.exists():
        by_kind = json.loads(state_path.read_text()).get("faults_by_kind") or {}
        summary.values["faults_by_kind"] = by_kind
        if by_kind:
            print("\nfaults injected by the exchange")
            for kind, n in sorted(by_kind.items()):
                print(f"  {kind:<20} {n:>8}")
    if state_path.exists() and (out_dir / "state.json").exists():
        checks = _venue_checks(out_dir)
        summary.values["venue_checks"] = checks
        truth_open = _venue_open_orders(out_dir)
        summary.values["venue_open_orders"] = truth_open
        print("\nthe pipeline's view against the exchange's ground truth")
        print(f"  {'our orders open on the venue at the end':<40} {truth_open}")
        for name, found in checks.items():
            print(f"  {name.replace('_', ' '):<40} {found or 'none'}")
    if html:
        page, table = write_demo_report(out_dir)
        summary.values["report"] = str(page)
        print("\ntrading report (makerflow.reports)")
        print("  " + table.replace("\n", "\n  "))
        print(f"\nHTML report: {page}")
    print(f"streams: {out_dir}/<name>.jsonl; the exchange's ground truth: {out_dir}/exchange_*")
    return summary


def write_demo_report(out_dir: Path) -> tuple[Path, str]:
    """The backtests' report (:mod:`makerflow.reports`) of the traded market: the futures'
    ticks fed the index only, so they are left out of the PnL, markouts and plots."""
    from makerflow.reports import compute, format_table, load_run, render_html

    frames = load_run(out_dir)
    ticks = frames.get("ticks")
    if ticks is not None and ticks.height:
        frames["ticks"] = ticks.filter(
            (pl.col("venue") == TRADED[0]) & (pl.col("symbol") == TRADED[1])
        )
    report = compute(frames)
    for stem, df in report.tables().items():
        df.write_parquet(out_dir / f"{stem}.parquet")
    page = out_dir / "report.html"
    page.write_text(render_html(report, "makerflow demo: Binance BTC/USDT, paper-traded"))
    return page, format_table(report)


def _venue_open_orders(out_dir: Path) -> int:
    from makerflow.demo.ground_truth import read_exchange_truth

    orders = read_exchange_truth(out_dir)["orders"]
    return sum(1 for o in orders if o["status"] in ("new", "partially_filled"))


def _venue_checks(out_dir: Path) -> dict[str, Any]:
    from makerflow.demo.ground_truth import compare_with_venue, read_exchange_truth

    fills = load(out_dir, "fills")
    trade_ids = [str(t) for t in fills["trade_id"]] if fills.height else []
    view = json.loads((out_dir / "state.json").read_text())
    return compare_with_venue(read_exchange_truth(out_dir), view, trade_ids)
