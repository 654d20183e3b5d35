"""Are a change's backtest outputs byte-identical? sha256 of every output file of fixed runs.

A speed-up of the backtest path must not move a byte of what it writes. This runs the raw
USDT-M recordings through ``run_backtest`` in five fixed cases and prints one line per output
file (``case file sha256``); run it on the code before and after a change and diff the two:

    python benchmarks/backtest_identity.py > before.txt     # on the old code
    python benchmarks/backtest_identity.py > after.txt      # on the new code
    diff before.txt after.txt && echo identical

The cases: the first 30 000 lines of the BTCUSDT day, the whole BTCUSDT and ETHUSDT files,
the BTCUSDT file under risk limits tight enough to breach and halt (the kill-switch path),
and three-level quoting with short lifetimes and an age ceiling (many refreshes, age-outs,
rejects backing a slot off).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.backtest.run import FileInput, run_backtest  # noqa: E402
from makerflow.backtest.settings import load_backtest_config  # noqa: E402

_TIGHT = (
    ("risk.default_market_limits.max_move_bps", 20.0),
    ("risk.default_market_limits.max_position", 0.0015),
    ("risk.default_market_limits.max_cancel_rate", 0.6),
    ("risk.default_market_limits.min_orders", 5),
    ("risk.default_market_limits.max_realized_vol_bps", 12.0),
)
_QUOTES = (
    ("quoting.defaults.levels", 3),
    ("quoting.defaults.fair_price", "microprice"),
    ("quoting.defaults.min_quote_lifetime_s", 0.3),
    ("quoting.defaults.max_quote_age_s", 4.0),
    ("quoting.defaults.refresh_fraction", 0.6),
    ("quoting.defaults.warmup_s", 5.0),
)


def _data(name: str) -> Path:
    rel = Path("shared") / "data" / "binance" / "usdm" / name
    for base in (REPO.parent, REPO.parent.parent, Path("/work")):
        if (base / rel).exists():
            return base / rel
    raise FileNotFoundError(f"no {rel} next to the repository")


def _head(src: Path, lines: int, into: Path) -> Path:
    with gzip.open(src, "rb") as f, gzip.open(into, "wb") as g:
        for i, line in enumerate(f):
            if i >= lines:
                break
            g.write(line)
    return into


def cases(tmp: Path) -> dict[str, tuple[Path, tuple[tuple[str, Any], ...]]]:
    btc = _data("btcusdt_20240808.gz")
    return {
        "btc-slice": (_head(btc, 30_000, tmp / "btcusdt_slice.gz"), ()),
        "btc": (btc, ()),
        "eth": (_data("ethusdt_20240808.gz"), ()),
        "btc-tight-risk": (btc, _TIGHT),
        "btc-3-levels": (btc, _QUOTES),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--case", action="append", help="only these cases (default: all)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, (path, overrides) in cases(tmp).items():
            if args.case and name not in args.case:
                continue
            out = tmp / name
            run_backtest(FileInput((str(path),)), load_backtest_config(None, overrides), out)
            for f in sorted(p for p in out.rglob("*") if p.is_file()):
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
                print(f"{name} {f.relative_to(out)} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
