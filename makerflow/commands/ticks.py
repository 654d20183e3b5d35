"""``makerflow ticks``: recorded market data -> ticks as JSONL, without Kafka.

Runs the ticks flow's computation over recorded files (any format the recorded-file source
reads) and writes one Tick per line in the Tick schema's JSON encoding, so a user can
inspect or diff ticks. Bars, data-quality findings and dead letters go to files next to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bytewax.testing import cluster_main, run_main

from makerflow.flows.ticks import build_file_flow
from makerflow.operators.ticks import load_ticks_config
from makerflow.sinks.jsonl import read_jsonl


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ticks", help="recorded market data -> ticks (JSONL), without Kafka"
    )
    p.add_argument("--input", required=True, nargs="+", help="recorded file(s) or directories")
    p.add_argument("--output", required=True, help="ticks JSONL file to write")
    p.add_argument("--bars", help="bars JSONL (default: <output>.bars.jsonl)")
    p.add_argument("--quality", help="data-quality JSONL (default: <output>.quality.jsonl)")
    p.add_argument("--dead-letters", help="dead letters JSONL (default: <output>.deadletter.jsonl)")
    p.add_argument("--config", help="TOML with a [ticks] table (TicksConfig)")
    p.add_argument("--venue", help="rename the venue (ccxt exchange id) of the input")
    p.add_argument("--symbol", help="rename the symbol (ccxt unified symbol) of the input")
    p.add_argument("--workers", type=int, default=1, help="Bytewax workers (default 1)")
    p.set_defaults(func=run)


def _beside(output: Path, suffix: str) -> Path:
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(f"{stem}.{suffix}.jsonl")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    paths = {
        "ticks": out,
        "bars": Path(args.bars) if args.bars else _beside(out, "bars"),
        "quality": Path(args.quality) if args.quality else _beside(out, "quality"),
        "dead letters": (
            Path(args.dead_letters) if args.dead_letters else _beside(out, "deadletter")
        ),
    }
    for path in paths.values():
        # Every output exists after a run, empty when nothing went there.
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    flow = build_file_flow(
        args.input,
        paths["ticks"],
        bars_path=paths["bars"],
        quality_path=paths["quality"],
        dead_letters_path=paths["dead letters"],
        config=load_ticks_config(args.config),
        venue=args.venue,
        symbol=args.symbol,
    )
    if args.workers > 1:
        cluster_main(flow, [], 0, worker_count_per_proc=args.workers)
    else:
        run_main(flow)
    for what, path in paths.items():
        print(f"{what}: {len(read_jsonl(path, Any))} lines in {path}")
    return 0
