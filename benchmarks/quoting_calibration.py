"""The numbers behind the quoting defaults, measured on the recorded Binance BTC/USDT data.

    .venv/bin/python benchmarks/quoting_calibration.py [--quick] [--every 30]

Replays the book and trade ticks through the quoter's own estimators and prints, every
``--every`` seconds of event time: the old tick-level EWMA volatility (the quoter before
issue 13), the realized volatility of the mid on 1 s and 5 s grids over the last minute, the
grid estimator (``GridVolatility``, the defaults' 60 s half-life), the fitted arrival
intensity ``A`` and ``kappa`` (``TradeIntensity``, 120 s window), and the default GLFT quote
from them: the half spread, the skew of one 0.001 BTC fill, and the skew at
``max_position`` (0.01 BTC) relative to the half spread.
Not a speed benchmark: a table of estimates, to recalibrate ``gamma``, ``kappa``,
``arrival_rate`` and the windows for another market or another day.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import logging
import math
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

from makerflow.operators.intensity import TradeIntensity
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting_config import QuotingConfig, QuotingParams
from makerflow.operators.quoting_models import Glft
from makerflow.operators.volatility import GridVolatility
from makerflow.schemas.events import Tick

NS = 1_000_000_000


def _sibling(name: str) -> ModuleType:
    """A module beside this script (``make bench`` runs each file as a script)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ticks = _sibling("quoting")
FULL, QUICK, load_ticks = _ticks.FULL, _ticks.QUICK, _ticks.load_ticks
BASELINE_REV, load_baseline = _ticks.BASELINE_REV, _ticks.load_baseline


class TickEwma:
    """The estimator the quoter had before: EWMA of squared tick-to-tick mid moves."""

    def __init__(self, half_life_s: float) -> None:
        self.decay = math.log(2.0) / half_life_s
        self.variance = 0.0
        self.last: tuple[int, float] | None = None

    def update(self, ts: int, mid: float) -> None:
        if self.last is not None:
            dt = (ts - self.last[0]) / NS
            self.variance = self.variance * math.exp(-self.decay * dt)
            self.variance += self.decay * (mid - self.last[1]) ** 2
        self.last = (ts, mid)


def realized(mids: list[tuple[int, float]], grid_s: float) -> float:
    step = round(grid_s * NS)
    if not mids:
        return math.nan
    sampled: list[float] = []
    nxt = (mids[0][0] // step + 1) * step
    last = mids[0][1]
    for ts, mid in mids:
        while ts >= nxt:
            sampled.append(last)
            nxt += step
        last = mid
    moves = [b - a for a, b in itertools.pairwise(sampled)]
    return math.sqrt(sum(m * m for m in moves) / len(moves) / grid_s) if moves else math.nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the demo's two minutes")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between rows")
    args = ap.parse_args(argv)
    paths: tuple[Path, ...] = (QUICK,) if args.quick or not all(p.exists() for p in FULL) else FULL
    ticks: list[Tick] = load_ticks(paths)
    p = QuotingParams()
    old = TickEwma(30.0)
    vol = GridVolatility(p.sigma_grid_s, p.sigma_half_life_s)
    fit = TradeIntensity(4.0 / (p.kappa * 40), window_s=p.intensity_window_s)
    recent: list[tuple[int, float]] = []
    t0 = ticks[0].ts
    every = round(args.every * NS)
    due = t0 + every
    print(f"{len(ticks)} ticks from {' + '.join(x.name for x in paths)}; GLFT gamma={p.gamma}")
    print()
    print(
        "|     t s | tick EWMA | RV 1 s | RV 5 s | grid est |    A /s | kappa /USDT |"
        " half spread USDT (bps) | skew/fill | skew at max / hs |"
    )
    print(
        "|--------:|" + "----------:|" + "-------:|" * 2 + "---------:|--------:|------------:|"
        "-----------------------:|----------:|-----------------:|"
    )
    for t in ticks:
        old.update(t.ts, t.mid)
        vol.update(t.ts, t.mid)
        recent.append((t.ts, t.mid))
        if t.reason == "trade" and t.last_price is not None:
            fit.add(t.ts, abs(t.last_price - t.mid))
        if t.ts < due:
            continue
        due += every
        recent = [x for x in recent if x[0] >= t.ts - 60 * NS]
        est = fit.fit()
        a, kappa = (est.a, est.kappa) if est is not None else (p.arrival_rate, p.kappa)
        model = Glft(gamma=p.gamma, a=a, kappa=kappa, order_size=p.order_size)
        flat = model.quote(t.mid, 0.0, vol.sigma, math.inf)
        one = t.mid - model.quote(t.mid, p.order_size, vol.sigma, math.inf).reservation
        full = t.mid - model.quote(t.mid, p.position_limit, vol.sigma, math.inf).reservation
        print(
            f"| {(t.ts - t0) / NS:>7.0f} | {math.sqrt(old.variance):>9.2f} |"
            f" {realized(recent, 1.0):>6.2f} | {realized(recent, 5.0):>6.2f} |"
            f" {vol.sigma:>8.2f} | {a:>7.2f} | {kappa:>11.3f} |"
            f" {flat.half_spread:>10.2f} ({flat.half_spread / t.mid * 1e4:>5.2f} bps) |"
            f" {one:>9.3f} | {full / flat.half_spread:>16.2f} |"
        )
    print()
    hygiene_table(ticks)
    return 0


def hygiene_table(ticks: list[Tick]) -> None:
    logging.getLogger("makerflow.operators.quoter").setLevel(logging.ERROR)
    logging.getLogger("makerflow.operators.quoter_orders").setLevel(logging.ERROR)
    logging.getLogger("_mf_baseline.quoting").setLevel(logging.ERROR)
    quoters: list[tuple[str, Any]] = []
    cfg = QuotingConfig()
    quoters.append(("defaults now", Quoter(cfg.markets[0], cfg.params_for(cfg.markets[0]))))
    try:
        base = load_baseline()
        old = base.quoting_config.QuotingConfig()
        quoters.append(
            (f"defaults at {BASELINE_REV}", base.quoting.Quoter(old.markets[0], old.defaults))
        )
    except (OSError, ImportError, SyntaxError, subprocess.CalledProcessError) as exc:
        print(f"baseline {BASELINE_REV} not loadable ({exc})")
    span = (ticks[-1].ts - ticks[0].ts) / NS
    print(
        "| quoter              | places/s | ticks quoting | on the wrong side of the mid |"
        " worst USDT | half spread p10 / p50 / p90 USDT |"
    )
    print(
        "|---------------------|---------:|--------------:|-----------------------------:|"
        "-----------:|---------------------------------:|"
    )
    for name, q in quoters:
        places = wrong = quoting = 0
        worst = 0.0
        spreads: list[float] = []
        for t in ticks:
            out = q.on_tick(t)
            places += sum(1 for i in out.intents if i.action == "place")
            live = [o for o in q.orders.values() if o.cancel_ts is None]
            quoting += bool(live)
            bad = [(o.price - t.mid) if o.side == "buy" else (t.mid - o.price) for o in live]
            if bad and max(bad) >= 0:
                wrong += 1
                worst = max(worst, max(bad))
            desired = q.desired_ladder(t.ts)
            if desired is not None:
                spreads.append(desired[0].half_spread)
        spreads.sort()
        n = len(spreads)
        pcts = " / ".join(f"{spreads[int(f * n)]:.2f}" for f in (0.1, 0.5, 0.9))
        print(
            f"| {name:<19} | {places / span:>8.2f} | {quoting:>13} |"
            f" {wrong:>10} ({100 * wrong / max(1, quoting):>5.1f} % of ticks) |"
            f" {worst:>10.2f} | {pcts:>32} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
