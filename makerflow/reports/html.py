"""The report as one self-contained HTML page: the headline table and, per market, four plots
(price with our quotes and fills; inventory; PnL; the markout curve) drawn by matplotlib as
inline SVG. Nothing is fetched: no script, style or font comes from the network.

Each plot is a ``<figure class="plot" data-plot=NAME>`` whose data series are SVG groups with
ids ``mf-<plot>-<series>``. The page's own script checks, in the browser, that every series
was laid out with a non-empty box and marks each figure ``data-rendered``, then writes the
result to ``<pre id="render-check">`` (read by the Chromium test and by people).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from typing import Any

import matplotlib
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from makerflow.reports.summary import Report, table_rows

NS = 1_000_000_000
MAX_POINTS = 4000
PLOTS = ("price", "inventory", "pnl", "markouts")


def thin(df: pl.DataFrame, max_points: int = MAX_POINTS) -> pl.DataFrame:
    """At most about ``max_points`` rows, the last row of each equal slice of event time
    (a plot needs no more; the parquet files keep every row)."""
    if df.height <= max_points:
        return df
    lo, hi = df["ts"].min(), df["ts"].max()
    width = max(1, (int(hi) - int(lo)) // max_points + 1)  # type: ignore[arg-type]
    return (
        df.with_columns(((pl.col("ts") - lo) // width).alias("_bucket"))
        .group_by("_bucket", maintain_order=True)
        .last()
        .drop("_bucket")
    )


def _seconds(ts: pl.Series, t0: int) -> list[float]:
    return ((ts - t0) / NS).to_list()


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
    return text.strip()


def _new(title: str, ylabel: str) -> tuple[Figure, Axes]:
    # The object API without pyplot: no global figure registry, no GUI backend.
    fig = Figure(figsize=(11, 3.4), dpi=96)
    ax = fig.subplots()
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("seconds from start (event time)")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="#888")


def price_plot(report: Report, market: str, t0: int) -> Figure:
    fig, ax = _new(f"{market}: mid, our best quotes and our fills", "price")
    ticks = thin(report.ticks.filter(pl.col("market") == market))
    quotes = thin(report.quotes.filter(pl.col("market") == market))
    fills = report.fills.filter(pl.col("market") == market)
    if ticks.height:
        (line,) = ax.plot(_seconds(ticks["ts"], t0), ticks["mid"].to_list(), lw=0.8, color="#444")
        line.set_gid("mf-price-mid")
        line.set_label("mid")
    for side, color in (("bid", "#1a7f37"), ("ask", "#cf222e")):
        q = quotes.filter(pl.col(side).is_not_null()) if quotes.height else quotes
        if q.height:
            (step,) = ax.step(
                _seconds(q["ts"], t0), q[side].to_list(), where="post", lw=0.9, color=color
            )
            step.set_gid(f"mf-price-quote-{side}")
            step.set_label(f"our {side}")
    for side, marker, color in (("buy", "^", "#1a7f37"), ("sell", "v", "#cf222e")):
        f = fills.filter(pl.col("side") == side)
        if f.height:
            pts = ax.scatter(
                _seconds(f["ts"], t0),
                f["price"].to_list(),
                marker=marker,
                s=36,
                color=color,
                edgecolors="black",
                linewidths=0.5,
                zorder=5,
                label=f"{side} fill",
            )
            pts.set_gid(f"mf-price-fill-{side}")
    if not ticks.height:
        _empty(ax, "no ticks")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def inventory_plot(report: Report, market: str, t0: int) -> Figure:
    fig, ax = _new(f"{market}: inventory", "position (base)")
    pnl = thin(report.pnl.filter(pl.col("market") == market))
    if pnl.height:
        (line,) = ax.step(
            _seconds(pnl["ts"], t0), pnl["position"].to_list(), where="post", color="#0969da"
        )
        line.set_gid("mf-inventory-position")
        ax.axhline(0.0, color="#888", lw=0.6)
    else:
        _empty(ax, "no fills: inventory stayed flat")
    return fig


def pnl_plot(report: Report, market: str, t0: int) -> Figure:
    fig, ax = _new(f"{market}: PnL marked to the mid", "quote currency")
    pnl = thin(report.pnl.filter(pl.col("market") == market))
    if pnl.height:
        x = _seconds(pnl["ts"], t0)
        series = (
            ("total", "total (net)", "#0969da", 1.6),
            ("realized", "realized (before fees)", "#1a7f37", 0.9),
            ("unrealized", "unrealized", "#bf8700", 0.9),
        )
        for col, label, color, lw in series:
            (line,) = ax.plot(x, pnl[col].to_list(), label=label, color=color, lw=lw)
            line.set_gid(f"mf-pnl-{col}")
        (fees,) = ax.plot(x, (-pnl["fees"]).to_list(), label="-fees", color="#cf222e", lw=0.9)
        fees.set_gid("mf-pnl-fees")
        dd = ax.fill_between(
            x,
            pnl["total"].to_list(),
            (pnl["total"] + pnl["drawdown"]).to_list(),
            color="#cf222e",
            alpha=0.12,
            label="drawdown",
        )
        dd.set_gid("mf-pnl-drawdown")
        ax.axhline(0.0, color="#888", lw=0.6)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        _empty(ax, "no fills: no PnL")
    return fig


def markout_plot(report: Report, market: str, t0: int) -> Figure:
    fig, ax = _new(f"{market}: markout after our fills (signed mid move)", "bps of the mid")
    ax.set_xlabel("seconds after the fill (log scale)")
    curve = report.markout_curve
    curve = (
        curve.filter((pl.col("market") == market) & (pl.col("fills") > 0))
        if curve.height
        else curve
    )
    if curve.height:
        for side, color in (("all", "#0969da"), ("buy", "#1a7f37"), ("sell", "#cf222e")):
            c = curve.filter(pl.col("side") == side)
            if c.height:
                # symlog keeps the 0 s point (the fill itself) on a log-like axis
                (line,) = ax.plot(
                    c["horizon_s"].to_list(),
                    c["markout_bps"].to_list(),
                    marker="o",
                    ms=3,
                    color=color,
                    lw=1.6 if side == "all" else 0.9,
                    label=side,
                )
                line.set_gid(f"mf-markouts-{side}")
        ax.set_xscale("symlog", linthresh=0.1)
        horizons = sorted(set(curve["horizon_s"].to_list()))
        ax.set_xticks(horizons, [f"{h:g}" for h in horizons])
        ax.minorticks_off()
        ax.axhline(0.0, color="#888", lw=0.6)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        _empty(ax, "no fills: no markouts")
    return fig


_PLOT_FNS: dict[str, Callable[[Report, str, int], Figure]] = {
    "price": price_plot,
    "inventory": inventory_plot,
    "pnl": pnl_plot,
    "markouts": markout_plot,
}

_CHECK_SCRIPT = """
(function () {
  var figures = document.querySelectorAll("figure.plot");
  var result = {plots: figures.length, rendered: 0, figures: []};
  figures.forEach(function (fig) {
    var series = fig.querySelectorAll('svg g[id^="mf-"]');
    var drawn = 0;
    series.forEach(function (g) {
      var box = g.getBoundingClientRect();
      var marks = g.querySelectorAll("path, use, polyline, line").length;
      if (marks > 0 && (box.width > 0 || box.height > 0)) { drawn += 1; }
    });
    var svg = fig.querySelector("svg");
    var svgBox = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    var empty = fig.dataset.empty === "true";
    var ok = svgBox.width > 100 && svgBox.height > 50 && drawn === series.length &&
             (empty || series.length > 0);
    fig.dataset.rendered = ok ? "true" : "false";
    fig.dataset.series = String(drawn) + "/" + String(series.length);
    if (ok) { result.rendered += 1; }
    result.figures.push({plot: fig.dataset.plot, market: fig.dataset.market, rendered: ok,
                         empty: empty, series: series.length, drawn: drawn,
                         width: Math.round(svgBox.width), height: Math.round(svgBox.height)});
  });
  // Self-contained: the browser loaded nothing beyond the page itself.
  result.resources = performance.getEntriesByType("resource").map(function (r) { return r.name; });
  document.body.dataset.plotsRendered = String(result.rendered) + "/" + String(result.plots);
  document.getElementById("render-check").textContent = JSON.stringify(result);
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; font-size: 14px; }
td, th { padding: 2px 10px; border-bottom: 1px solid #d0d7de; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure.plot { margin: 1em 0; }
figure.plot svg { max-width: 100%; height: auto; }
#render-check { color: #57606a; font-size: 11px; white-space: pre-wrap; }
.note { color: #9a6700; }
"""


def _table(report: Report) -> str:
    markets = list(report.headline())
    head = "".join(f"<th>{html.escape(m)}</th>" for m in markets)
    body = "".join(
        "<tr><td>"
        + html.escape(label)
        + "</td>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for label, cells in table_rows(report)
    )
    return f'<table id="summary"><tr><th></th>{head}</tr>{body}</table>'


def _markout_table(report: Report, market: str) -> str:
    """Mean markout (bps) per horizon and side, with the fills behind each mean."""
    curve = report.markout_curve
    if not curve.height:
        return ""
    c = curve.filter((pl.col("market") == market) & (pl.col("fills") > 0))
    if not c.height:
        return ""
    sides = [s for s in ("all", "buy", "sell") if c.filter(pl.col("side") == s).height]
    head = "".join(f"<th>{s} (bps)</th><th>fills</th>" for s in sides)
    rows = []
    for h in sorted(set(c["horizon_s"].to_list())):
        cells = []
        for side in sides:
            row = c.filter((pl.col("side") == side) & (pl.col("horizon_s") == h))
            if row.height:
                cells.append(f"<td>{row['markout_bps'][0]:+.2f}</td><td>{row['fills'][0]}</td>")
            else:
                cells.append("<td>n/a</td><td>0</td>")
        rows.append(f"<tr><td>{h:g} s</td>{''.join(cells)}</tr>")
    return f'<table class="markouts"><tr><th>after the fill</th>{head}</tr>{"".join(rows)}</table>'


def render_html(report: Report, title: str = "makerflow run report") -> str:
    """The whole page as one string (pure: the same report gives the same page)."""
    parts: list[str] = []
    # Stable SVG ids and no timestamp, so the same report gives the same bytes; text stays
    # text (no embedded glyph paths).
    style: dict[Any, Any] = {"svg.hashsalt": "makerflow", "svg.fonttype": "none", "svg.id": None}
    with matplotlib.rc_context(style):
        for market, row in report.headline().items():
            t0 = int(row["start_ns"] or 0)
            parts.append(f"<h2>{html.escape(market)}</h2>")
            for name in PLOTS:
                svg = _svg(_PLOT_FNS[name](report, market, t0))
                # A plot with nothing to draw (no fills yet) says so instead of failing the check.
                empty = "false" if 'id="mf-' in svg else "true"
                parts.append(
                    f'<figure class="plot" data-plot="{name}" data-empty="{empty}" '
                    f'data-market="{html.escape(market)}">{svg}</figure>'
                )
            parts.append(_markout_table(report, market))
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in report.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{_table(report)}{notes}{''.join(parts)}"
        '<pre id="render-check">the page script did not run</pre>'
        f"<script>{_CHECK_SCRIPT}</script></body></html>\n"
    )
