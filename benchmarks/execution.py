"""Placement throughput of the exchange sink when 5 % of the answers are lost, against none.

Every row runs in the same process against the same local exchange, through the unmodified
ccxt client and the execute_intents operator (run_main; intents in batches of C, as a Bytewax
input delivers them): N limit orders, the book emptied between rows outside the timing. In
the lossy rows the exchange's seeded chaos strikes 5 % of the order requests with ``lost``
(the order is placed, then the connection drops without an answer, at once or after 200 ms);
the sink never re-sends such a place, it looks the order up by client id and reports what the
venue holds. Every row must end with every order resting exactly once and every intent
answered ``ack``.

    .venv/bin/python benchmarks/execution.py [--quick] [-n N] [--concurrency C] [--repeat R]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow import metrics
from makerflow.exchange import DEFAULT_API_KEY, DEFAULT_SECRET, LocalExchange
from makerflow.operators.guards import GuardLimits
from makerflow.schemas.events import OrderEvent, OrderIntent
from makerflow.sinks.exchange import Credentials, ExchangeSinkConfig, execute_intents

REPLAY = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/exchange/btcusdt_spot_top_trades_60s.gz"
)
CREDS = Credentials(DEFAULT_API_KEY, DEFAULT_SECRET)


def intents(n: int, tag: str) -> list[OrderIntent]:
    # Bids spread over 5 000 ticks under the market, so none fill and none repeat.
    return [
        OrderIntent(
            ts=time.time_ns(),
            venue="binance",
            symbol="BTC/USDT",
            action="place",
            client_order_id=f"mf-{tag}-{i}",
            side="buy",
            price=round(61_000.0 - (i % 5000) * 0.01, 2),
            qty=0.001,
            reference=61_000.0,
        )
        for i in range(n)
    ]


def config(ex: LocalExchange, concurrency: int) -> ExchangeSinkConfig:
    return ExchangeSinkConfig(
        url=ex.url,
        enable_rate_limit=False,
        intent_ttl_ms=None,
        timeout_ms=2_000,
        retry_seed=1,
        max_in_flight=concurrency,
        max_in_flight_per_market=concurrency,
        sweep_interval_s=None,
        # Every intent here is new: no look-up before sending (the intents are stamped
        # before the flow is built, which would make them look like a replay).
        look_up_replays=False,
        guards=GuardLimits(max_open_orders_per_market=10**6, max_distance_bps=10_000),
    )


def place_all(ex: LocalExchange, n: int, concurrency: int, tag: str) -> tuple[float, dict]:
    out: list[OrderEvent] = []
    flow = Dataflow(f"bench_{tag}")
    s = op.input("in", flow, TestingSource(intents(n, tag), batch_size=concurrency))
    sent = metrics.ORDERS_SENT.labels(venue="binance", action="place")
    before = sent._value.get()
    op.output(
        "out",
        execute_intents("execute", s, config(ex, concurrency), credentials=CREDS).orders,
        TestingSink(out),
    )
    t0 = time.perf_counter()
    run_main(flow)
    took = time.perf_counter() - t0
    statuses = collections.Counter(e.status for e in out)
    return took, {"statuses": dict(statuses), "sent": int(sent._value.get() - before)}


def clear(ex: LocalExchange) -> None:
    def cancel_all(s):
        if s.engine.open_orders("main", "BTCUSDT"):
            s.engine.cancel_all("main", "BTCUSDT")

    ex.call(cancel_all)


def resting(ex: LocalExchange, tag: str) -> list[str]:
    return ex.call(
        lambda s: [
            o.client_order_id
            for o in s.engine.open_orders("main", "BTCUSDT")
            if o.client_order_id.startswith(f"mf-{tag}-")
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run")
    ap.add_argument("-n", type=int, default=None, help="orders per row")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the best is shown")
    ap.add_argument("--loss", type=float, default=0.05, help="share of answers lost")
    args = ap.parse_args()
    n = args.n or (300 if args.quick else 2000)
    best: dict[str, tuple[float, dict]] = {}
    with LocalExchange(
        speed=0, replay=REPLAY, balances={"main": {"USDT": 1_000_000_000, "BTC": 1000}}
    ) as ex:
        ex.advance(1)
        # Warm up (connections, markets, code paths) outside the timing.
        place_all(ex, min(n, 100), args.concurrency, "warm")
        clear(ex)
        for r in range(args.repeat):
            # Alternate the rows so drift (a busy machine) hits both alike.
            rows = (
                ("no answers lost", 0.0, 0.0),
                (f"{args.loss:.0%} lost, drop at once", args.loss, 0.0),
                (f"{args.loss:.0%} lost, drop at 200ms", args.loss, 0.2),
            )
            for k, (name, loss, after) in enumerate(rows):
                tag = f"{k}r{r}"
                lost_before = ex.call(lambda s: s.faults.injected_by_kind["lost"])
                if loss:
                    ex.chaos(loss, seed=r, kinds=("lost",), lost_after_s=after)
                took, info = place_all(ex, n, args.concurrency, tag)
                ex.chaos(0.0)
                lost = ex.call(lambda s: s.faults.injected_by_kind["lost"]) - lost_before
                placed = resting(ex, tag)
                assert len(placed) == len(set(placed)) == n, f"{name}: {len(placed)} rest, not {n}"
                assert info["statuses"] == {"ack": n}, info
                info["lost"] = lost
                clear(ex)
                if name not in best or took < best[name][0]:
                    best[name] = (took, info)
    print(
        f"\nexecution placement throughput: {n} limit orders, concurrency {args.concurrency}, "
        f"best of {args.repeat}, unmodified ccxt client, local exchange on loopback\n"
    )
    print(
        f"{'scenario':26} {'orders':>7} {'seconds':>8} {'orders/s':>9} {'vs none':>8} "
        f"{'lost':>5} {'sent':>6} {'acks':>6}"
    )
    base = n / best["no answers lost"][0]
    for name, (took, info) in best.items():
        rate = n / took
        print(
            f"{name:26} {n:>7} {took:>8.2f} {rate:>9.0f} {rate / base:>8.2f} "
            f"{info['lost']:>5} {info['sent']:>6} {info['statuses'].get('ack', 0):>6}"
        )
    print(
        "\nlost = answers the exchange dropped after placing the order; sent = place requests "
        "(one per order: a lost answer is looked up by client id, never re-sent)"
    )


if __name__ == "__main__":
    main()
