"""What event-time alignment costs a live ticks service: the added latency per event.

Live, the ticks service holds a market's book update until md.trades shows a later time (or
its own stream is ``align_ms`` past it), and a trade until md.book does. Here the two
streams of real recorded Binance data are *arrived* as a live consumer would see them: each
event at its own event time plus its topic's transport delay (``--trades-delay-ms`` skews
the trades topic), and each event's added latency is the arrival time of the event whose
push released it minus its own arrival. Printed per ``align_ms``: p50, p99, p99.9 and max
of the added latency (ms, book updates and trades apart), and how many events arrived late
(applied and reported ``out_of_order``). ``bounded`` is the replay mode (no bound), shown for
its latency had it been used live.

    python benchmarks/align_latency.py                 # spot BTC 2024-08-08, both topics on time
    python benchmarks/align_latency.py --trades-delay-ms 20
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.operators.align import TwoStreamMerger  # noqa: E402
from makerflow.schemas.events import DeadLetter, Trade  # noqa: E402
from makerflow.sources.recorded import read_recorded  # noqa: E402

DATA = Path("/work/shared/data/binance/spot/btcusdt_20240808.gz")
FIXTURE = REPO / "tests" / "fixtures" / "md" / "binance_spot_btcusdt_20240808_head6000.gz"
MS = 1_000_000


def arrivals(events: list[Any], trades_delay_ns: int) -> list[tuple[int, int, Any]]:
    """(arrival time, tie-break, event) in arrival order: each topic in its own order."""
    book = [(e.ts, i, e) for i, e in enumerate(events) if not isinstance(e, Trade)]
    trades = [(e.ts + trades_delay_ns, i, e) for i, e in enumerate(events) if isinstance(e, Trade)]
    return list(heapq.merge(book, trades))


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(arrived: list[tuple[int, int, Any]], lag_ns: int | None) -> dict[str, Any]:
    m = TwoStreamMerger(lag_ns)
    at: dict[int, int] = {}
    added: dict[str, list[float]] = {"book": [], "trade": []}
    late = 0
    for now, _, ev in arrived:
        at[id(ev)] = now
        for out in m.push(ev):
            kind = "trade" if isinstance(out, Trade) else "book"
            added[kind].append((now - at.pop(id(out))) / MS)
        late += len(m.take_late())
    return {"added": added, "late": late, "held_at_end": len(m.flush())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=DATA if DATA.exists() else FIXTURE)
    ap.add_argument("--trades-delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    events = [e for e in read_recorded(args.input) if not isinstance(e, DeadLetter)]
    arrived = arrivals(events, int(args.trades_delay_ms * MS))
    n_trades = sum(isinstance(e, Trade) for e in events)
    print(
        f"{args.input.name}: {len(events) - n_trades} book updates, {n_trades} trades, "
        f"trades topic delayed {args.trades_delay_ms} ms"
    )
    head = (
        f"{'align_ms':>9} {'stream':>6} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>9} {'late':>6}"
    )
    print(head)
    for lag_ms in (50, 200, 1000, None):
        r = measure(arrived, None if lag_ms is None else lag_ms * MS)
        for kind, xs in r["added"].items():
            name = "bounded" if lag_ms is None else str(lag_ms)
            print(
                f"{name:>9} {kind:>6} {pct(xs, 0.5):8.2f} {pct(xs, 0.99):8.2f} "
                f"{pct(xs, 0.999):8.2f} {max(xs, default=0.0):9.2f} {r['late']:>6}"
            )


if __name__ == "__main__":
    main()
