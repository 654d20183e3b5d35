"""``makerflow backtest --market synthetic``: the Avellaneda-Stoikov synthetic market.

No ``register`` here on purpose: the ``backtest`` command (its own module) owns the
subcommand and calls :func:`add_synthetic_args` on its parser and :func:`run_synthetic_cli`
when ``--market synthetic`` is chosen.
"""

from __future__ import annotations

import argparse
import json

import polars as pl

from makerflow.backtest.synthetic import STRATEGIES, SyntheticParams, run_synthetic

_DEFAULTS = SyntheticParams()


def add_synthetic_args(parser: argparse.ArgumentParser) -> None:
    """The synthetic market's flags; defaults are the paper's (section 3.3, gamma = 0.1)."""
    g = parser.add_argument_group("synthetic market (Avellaneda & Stoikov 2008, section 3.3)")
    g.add_argument("--gamma", type=float, default=_DEFAULTS.gamma, help="risk aversion")
    g.add_argument("--sigma", type=float, default=_DEFAULTS.sigma, help="mid volatility")
    g.add_argument("--kappa", type=float, default=_DEFAULTS.kappa, help="intensity decay")
    g.add_argument("--A", type=float, default=_DEFAULTS.A, help="intensity at the mid")
    g.add_argument("--T", type=float, default=_DEFAULTS.T, help="horizon")
    g.add_argument("--dt", type=float, default=_DEFAULTS.dt, help="time step")
    g.add_argument("--s0", type=float, default=_DEFAULTS.s0, help="initial mid")
    g.add_argument("--paths", type=int, default=_DEFAULTS.paths, help="Monte-Carlo paths")
    g.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="random seed")
    if not any(a.dest == "json" for a in parser._actions):
        g.add_argument("--json", action="store_true", help="print one JSON object")


def run_synthetic_cli(args: argparse.Namespace) -> int:
    """Run the market from parsed flags; print a table, or one JSON object with ``--json``."""
    try:
        result = run_synthetic(
            gamma=args.gamma,
            sigma=args.sigma,
            kappa=args.kappa,
            A=args.A,
            T=args.T,
            dt=args.dt,
            s0=args.s0,
            paths=args.paths,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"synthetic market: {exc}")
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, sort_keys=True))
        return 0
    table = pl.DataFrame([{"strategy": s, **result[s]} for s in STRATEGIES])
    with pl.Config(tbl_hide_dataframe_shape=True, float_precision=3, tbl_width_chars=160):
        print(table)
    print(
        f"{args.paths} paths, seed {args.seed}: gamma={args.gamma} sigma={args.sigma} "
        f"kappa={args.kappa} A={args.A} T={args.T} dt={args.dt} s0={args.s0}"
    )
    return 0
