"""Codec throughput: decode+validate and encode events/s, msgspec against the stdlib ``json``.

    .venv/bin/python benchmarks/codec.py [--quick]

Rows:
- ``decode``: bytes -> validated event through the topic's codec (tag, types, unknown fields,
  schema version), against ``json.loads`` plus constructing the same Struct from the dict
  (which validates nothing, so the baseline is generous);
- ``encode``: event -> bytes, against ``json.dumps`` of an already-built dict (generous again:
  the baseline skips turning the event into a dict);
- ``decode step``: the Kafka source's decoder over batches of 1 000 messages, counting once
  per batch, against the same work counting once per message (the previous design).

Events are shaped like the recorded Binance data (``../shared/data/binance``): a spot trade,
and a depth diff with 10 bid and 10 ask levels. One process, one thread: one core.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage

from makerflow import metrics
from makerflow.schemas.codec import encode
from makerflow.schemas.events import BookDelta, Trade
from makerflow.schemas.topics import MD_BOOK, MD_TRADES
from makerflow.sources.kafka import MessageDecoder

TARGET_TRADE_DECODES = 500_000


def sample_trade(i: int) -> Trade:
    return Trade(
        ts=1_723_161_253_914_000_000 + i * 1_000_000,
        recv_ts=1_723_161_253_921_551_000 + i * 1_000_000,
        venue="binance",
        symbol="BTC/USDT",
        trade_id=str(3_714_882_345 + i),
        price=61_234.57 + (i % 100) / 100,
        qty=0.00082 + (i % 7) / 1000,
        side="buy" if i % 2 else "sell",
    )


def sample_delta(i: int, levels: int = 10) -> BookDelta:
    mid = 61_234.5 + (i % 50) / 10
    return BookDelta(
        ts=1_723_161_253_900_000_000 + i * 100_000_000,
        recv_ts=1_723_161_253_912_000_000 + i * 100_000_000,
        venue="binance",
        symbol="BTC/USDT",
        first_seq=48_755_630_001 + i * 40,
        last_seq=48_755_630_040 + i * 40,
        bids=tuple((round(mid - 0.01 * (k + 1), 2), 0.0313 * (k % 5)) for k in range(levels)),
        asks=tuple((round(mid + 0.01 * (k + 1), 2), 0.1707 * (k % 3)) for k in range(levels)),
    )


def stdlib_trade(raw: bytes) -> Trade:
    d = json.loads(raw)
    del d["type"]
    return Trade(**d)


def stdlib_delta(raw: bytes) -> BookDelta:
    d = json.loads(raw)
    del d["type"]
    d["bids"] = tuple(tuple(level) for level in d["bids"])
    d["asks"] = tuple(tuple(level) for level in d["asks"])
    return BookDelta(**d)


def _best_time(run: Callable[[], None], repeats: int) -> float:
    # Best of several runs, with the cyclic GC off as ``timeit`` does: on a shared machine the
    # minimum is the least disturbed run, and GC pauses would depend on unrelated garbage.
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return best


def rate(fn: Callable[[Any], Any], items: list[Any], repeats: int) -> float:
    """Items per second of ``fn`` over ``items``, best of ``repeats`` runs."""

    def run() -> None:
        for x in items:
            fn(x)

    return len(items) / _best_time(run, repeats)


def batch_rate(fn: Callable[[list[Any]], Any], batches: list[list[Any]], repeats: int) -> float:
    """Items per second of ``fn`` over whole batches."""

    def run() -> None:
        for b in batches:
            fn(b)

    return sum(len(b) for b in batches) / _best_time(run, repeats)


def per_message_counting(decoder: MessageDecoder[Any]) -> Callable[[list[Any]], Any]:
    """The same decode, with a counter ``.inc()`` per message as the first design had."""
    counter_in = metrics.EVENTS_IN.labels(step="bench.per_message")
    decode = decoder.codec.decode

    def run(batch: list[Any]) -> list[Any]:
        out = []
        for msg in batch:
            counter_in.inc()
            out.append(decode(msg.value))
        return out

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer events, one repeat (a smoke run)")
    args = p.parse_args(argv)
    n, repeats = (20_000, 1) if args.quick else (100_000, 3)

    trades = [sample_trade(i) for i in range(n)]
    deltas = [sample_delta(i) for i in range(n // 4)]
    trade_raw = [encode(t) for t in trades]
    delta_raw = [encode(d) for d in deltas]
    trade_dicts = [json.loads(r) for r in trade_raw]
    delta_dicts = [json.loads(r) for r in delta_raw]

    # Both decoders must agree with each other before their speed means anything.
    assert all(stdlib_trade(r) == t for r, t in zip(trade_raw[:100], trades, strict=False))
    assert all(stdlib_delta(r) == d for r, d in zip(delta_raw[:100], deltas, strict=False))
    assert all(MD_BOOK.codec.decode(r) == d for r, d in zip(delta_raw[:100], deltas, strict=False))

    msgs = [
        KafkaSourceMessage(
            key=b"binance:BTC/USDT", value=r, topic="md.trades", partition=0, offset=i
        )
        for i, r in enumerate(trade_raw)
    ]
    batches = [msgs[i : i + 1000] for i in range(0, len(msgs), 1000)]
    decoder = MessageDecoder[Trade]("bench.decode", MD_TRADES.codec)

    rows = [
        (
            "Trade decode+validate",
            len(trade_raw[0]),
            rate(MD_TRADES.codec.decode, trade_raw, repeats),
            rate(stdlib_trade, trade_raw, repeats),
        ),
        (
            "BookDelta (20 levels) decode+validate",
            len(delta_raw[0]),
            rate(MD_BOOK.codec.decode, delta_raw, repeats),
            rate(stdlib_delta, delta_raw, repeats),
        ),
        (
            "Trade encode",
            len(trade_raw[0]),
            rate(encode, trades, repeats),
            rate(json.dumps, trade_dicts, repeats),
        ),
        (
            "BookDelta (20 levels) encode",
            len(delta_raw[0]),
            rate(encode, deltas, repeats),
            rate(json.dumps, delta_dicts, repeats),
        ),
    ]
    step_batch = batch_rate(decoder.decode_batch, batches, repeats)
    step_each = batch_rate(per_message_counting(decoder), batches, repeats)

    print(f"codec benchmark: {n} trades, {n // 4} deltas, best of {repeats}, one core\n")
    head = ("case", "bytes", "msgspec ev/s", "stdlib json ev/s", "ratio")
    print("| {:<38} | {:>5} | {:>13} | {:>16} | {:>6} |".format(*head))
    print(f"|{'-' * 40}|{'-' * 7}|{'-' * 15}|{'-' * 18}|{'-' * 8}|")
    for name, size, fast, base in rows:
        print(
            f"| {name:<38} | {size:>5} | {fast:>13,.0f} | {base:>16,.0f} | {fast / base:>5.1f}x |"
        )
    print()
    print(f"| {'decode step (Trade, 1 000/batch)':<38} | {'ev/s':>13} |")
    print(f"|{'-' * 40}|{'-' * 15}|")
    print(f"| {'count once per batch (current)':<38} | {step_batch:>13,.0f} |")
    print(f"| {'count once per message (before)':<38} | {step_each:>13,.0f} |")
    print()
    trade_rate = rows[0][2]
    verdict = "meets" if trade_rate >= TARGET_TRADE_DECODES else "BELOW"
    print(f"Trade decodes: {trade_rate:,.0f}/s {verdict} the target of {TARGET_TRADE_DECODES:,}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
