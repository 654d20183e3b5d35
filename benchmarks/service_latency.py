"""Latency through Kafka: a book update (or trade) produced to ``md.book`` / ``md.trades``
-> its tick on ``ticks`` -> the quoter's intent on ``orders.intents``, with the ticks and the
quoter services as separate processes, broken down per hop.

Per configuration, on a fresh tansu broker on loopback: the ticks service and the quoter
run under the Bytewax runner (``makerflow run ticks`` / ``quoter``, tailing), a warm-up
sends the recorded BTC/USDT snapshot and waits for the first intent, the idle CPU of both
services and of the broker is measured (``--idle`` s; this process's watchers paused), then
the recording's next events are produced at their recorded *receive* times (``--pace recv``:
the venue's own skew between its book and trade streams kept; ``--speed``) for
``--seconds``. An event's tick and intents carry its event time, so each is matched by
``ts``. Hops (ms): sent here -> the tick's Kafka timestamp (the ticks service's produce
time: its consumer's fetch wait and poll, the merge, the step) split into book updates and
trades, each with the merge's hold alone (``merge_hold_ms``: the merge and its caught-up
markers fed with the send times, no hops); the tick's timestamp -> seen here (flush, broker,
this process's 1 ms fetch); tick -> the intent's timestamp (the quoter); intent -> seen
here; and end to end. ``late``: ``out_of_order`` findings on md.quality. Kafka timestamps
have 1 ms resolution. Target: p99 <= 5 ms.

Configurations: ``before`` (the old consumer wait, 500 ms, no markers), ``nomarkers`` (the
defaults with ``[ticks] release_caught_up = "none"``), ``default`` (the shipped defaults),
``both`` (markers from both topics), ``tuned`` (the defaults with ``--variant``, by default
every consumer's ``fetch.wait.max.ms=1``), ``--fetch-waits N ...``. A variant's Kafka
settings are applied by a small launcher that updates the connector defaults and starts the
same flow under Bytewax's ``cli_main`` (what ``python -m bytewax.run`` calls).

What it found (2026-12-01, 2 cores shared with other engineers' runs, load average 5-11;
12 s at recorded receive times, 96 book updates and 86 trades with a tick, 7-8 intents;
two runs each; p50 / p99 ms of run 1, update->intent the best p50 / p99 of the two):

                          book->tick  trade->tick  tick->intent  update->intent  idle CPU %
                                                                                 ticks/quoter/broker
before (500 ms, no marks)  240 / 488   206 / 373    212 / 249     438 / 535       5 / 6 / 2
defaults, markers off      138 / 271    68 / 126      7 / 49      127 / 218       6 / 9 / 20
shipped defaults           136 / 280    18 / 87       9 / 18      100 / 210       7 / 11 / 21
markers from both topics    21 / 70     28 / 80      16 / 37       35 / 85        7 / 9 / 17
defaults + every wait 1 ms 143 / 267    23 / 84      11 / 21      130 / 227       9 / 19 / 37

Where the time went, and what was done:

* tansu answers a fetch that found nothing only when ``fetch.wait.max.ms`` is over (it
  sleeps the wait and looks again, ``tansu-broker/src/broker/fetch.rs``): librdkafka's
  500 ms default was each hop's wait, ~200 ms of the ticks leg and ~200 ms of the quoter's.
  The consumers of the path to an order now wait 5 ms (``sources.kafka.CONSUMER_DEFAULTS``,
  ``LOW_LATENCY_TOPICS``); the cost is the broker's: ~4 % of a core per idle consumer at
  5 ms (20 % for the five of ticks + quoter), 1 ms doubles it. Kafka and Redpanda answer
  when data comes, so there ``MAKERFLOW_KAFKA_FETCH_WAIT_MS=500`` loses nothing.
* Bytewax 0.21.1 polls a partition with ``consume(batch, 0.001)``, and librdkafka waits the
  whole millisecond unless the batch fills, one partition after the other: the quoter (8
  topics) blocked ~8 ms a round. Partitions now poll without waiting
  (``_ConsumeWithoutWaiting``); the runtime's own 1 ms cooldown paces an idle partition, so
  the services do not spin (idle CPU above).
* The sinks flush every batch, and librdkafka's flush sends at once whatever ``linger.ms``
  says (librdkafka PR #3494), so ``linger.ms`` changes nothing here: tick -> seen here is
  3-8 ms p50 with this process's 1 ms fetch on shared cores.
* The ticks service's merge: a trade waited for a later book update (~55 ms p50, up to
  100 ms) and a book update for a later trade (~128 ms p50, ~300 ms p99: the next trade, or
  the next book update past ``align_ms``). Held trades now go once md.book's partition is
  caught up (``[ticks] release_caught_up = "trades"``): trade -> tick 68 -> 18 ms p50. Book
  updates keep waiting for the trades, because on this venue trades arrive behind later book
  updates (up to 166 ms, ``align_latency.py --arrival recv``): releasing them early ("both",
  35 ms p50 end to end) made 2 late trades in one of these runs and 1 851 over the whole
  day. That hold is what stays between the shipped defaults and the 5 ms target: it is the
  venue's ordering, not the transport's.

    python benchmarks/service_latency.py                  # defaults and tuned, ~2 minutes
    python benchmarks/service_latency.py --repeat 2 --configs before nomarkers default both tuned
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from service_support import (
    QUOTER_TOML,
    REPO,
    TopicWatch,
    pct,
    recording,
    service_env,
    start_service,
    stop,
)

from makerflow.broker import Broker
from makerflow.kafka_admin import Sender, ensure_topics, producer
from makerflow.schemas import topics as t
from makerflow.schemas.codec import encode
from makerflow.schemas.events import BookSnapshot, Trade
from makerflow.sources.kafka import CONSUMER_DEFAULTS

TARGET_MS = 5.0
MS = 1e6

# Starts a service flow with connector settings changed: the consumer's on every Kafka
# input (merged over the source's add_config) and the producer's (PRODUCER_DEFAULTS).
LAUNCHER = """
import json, os, sys
from datetime import timedelta
import makerflow.sinks.kafka as sinks
import makerflow.sources.kafka as sources
cfg = json.loads(os.environ["BENCH_KAFKA"])
sinks.PRODUCER_DEFAULTS.update(cfg["producer"])
_build = sources.LagReportingKafkaSource.build_part
def build_part(self, step_id, for_part, resume_state):
    self._add_config = {**self._add_config, **cfg["consumer"]}
    return _build(self, step_id, for_part, resume_state)
sources.LagReportingKafkaSource.build_part = build_part
import importlib
from bytewax.run import cli_main
flow = importlib.import_module("makerflow.flows." + sys.argv[1]).flow
epoch = cfg.get("epoch_ms")
cli_main(flow, epoch_interval=timedelta(milliseconds=epoch) if epoch else None)
"""


@dataclass
class Config:
    name: str
    align_ms: int | None = None  # None: the shipped default
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)
    epoch_ms: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    """More environment of both services (``MAKERFLOW__TICKS__...`` overrides)."""

    @property
    def launched(self) -> bool:
        return bool(self.consumer or self.producer or self.epoch_ms)


def parse_variant(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    consumer: dict[str, Any] = {}
    prod: dict[str, Any] = {}
    for item in items:
        key, value = item.split("=", 1)
        if key.startswith("producer."):
            prod[key.removeprefix("producer.")] = value
        else:
            consumer[key] = value
    return consumer, prod


@dataclass
class Run:
    """Times are wall-clock ns (``time.time_ns``): the services' own produce times come as
    the messages' Kafka timestamps (CreateTime, set by their producers on this machine)."""

    sent: dict[int, int] = field(default_factory=dict)
    """Event time (a book update's or a trade's) -> when this process produced it."""
    trade_ts: set[int] = field(default_factory=set)
    """Event times of the trades sent (the rest are book updates)."""
    arrivals: list[tuple[int, Any]] = field(default_factory=list)
    """(sent, event) of every event of the measured stretch: the merge-hold model's input."""
    tick_at: dict[int, int] = field(default_factory=dict)
    tick_made: dict[int, int] = field(default_factory=dict)
    """Tick event time -> its Kafka timestamp: when the ticks service produced it (ms)."""
    intent_at: dict[int, int] = field(default_factory=dict)
    intent_made: dict[int, int] = field(default_factory=dict)
    late: int = 0
    """``out_of_order`` findings on md.quality: events the merge released too early."""
    idle_cpu: dict[str, float] = field(default_factory=dict)
    """Process -> CPU % of one core while no data flows (after the warm-up)."""

    def on_tick(self, m: Message, now: int) -> None:
        ts = json.loads(m.value())["ts"]
        if ts not in self.tick_at:
            self.tick_at[ts] = now
            self.tick_made[ts] = m.timestamp()[1] * MS

    def on_intent(self, m: Message, now: int) -> None:
        ts = json.loads(m.value())["ts"]
        if ts not in self.intent_at:
            self.intent_at[ts] = now
            self.intent_made[ts] = m.timestamp()[1] * MS

    def on_quality(self, m: Message, now: int) -> None:
        if json.loads(m.value()).get("kind") == "out_of_order":
            self.late += 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    t0, c0 = time.monotonic(), {n: cpu_seconds(p) for n, p in pids.items()}
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {n: 100 * (cpu_seconds(p) - c0[n]) / dt for n, p in pids.items()}


def merge_hold_ms(run: Run, align_ms: int, marker_ms: int, release: str) -> dict[int, float]:
    """What the ticks service's event-time merge alone holds each event: the merge
    (``TwoStreamMerger``, live bound ``align_ms``) fed with this process's send times, and
    the caught-up markers ``release`` asks for every ``marker_ms``, as if every hop took no
    time. Event time -> ms held."""
    if align_ms <= 0:
        return {}
    from makerflow.operators.align import TwoStreamMerger

    m = TwoStreamMerger(align_ms * MS)
    items: list[tuple[int, int, Any]] = [(sent, 0, ev) for sent, ev in run.arrivals]
    marking = [
        s for s in ("book", "trades") if release in ("both", "trades" if s == "book" else "book")
    ]
    if marking and run.arrivals:
        t, end = run.arrivals[0][0], run.arrivals[-1][0] + align_ms * MS
        while t <= end:
            items += [(t, 1, s) for s in marking]
            t += marker_ms * MS
    items.sort(key=lambda x: (x[0], x[1]))
    held: dict[int, float] = {}
    at: dict[int, int] = {}
    for now, kind, x in items:
        if kind == 0:
            at[id(x)] = now
            outs = m.push(x)
        else:
            outs = m.caught_up(trades=x == "trades")
        for out in outs:
            held.setdefault(out.ts, (now - at[id(out)]) / MS)
    return held


def start(
    cfg: Config, name: str, brokers: str, config: Path, logs: Path
) -> Any:  # subprocess.Popen
    extra = {"MAKERFLOW_TAIL": "1", **cfg.env}
    if cfg.align_ms is not None:
        extra["MAKERFLOW__TICKS__ALIGN_MS"] = str(cfg.align_ms)
    env = service_env(brokers, config, **extra)
    log = logs / f"{cfg.name}-{name}.log"
    if not cfg.launched:
        return start_service(name, env, log)
    import subprocess

    env["BENCH_KAFKA"] = json.dumps(
        {"consumer": cfg.consumer, "producer": cfg.producer, "epoch_ms": cfg.epoch_ms}
    )
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, name],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def measure(cfg: Config, seconds: float, speed: float, logs: Path, idle_s: float, pace: str) -> Run:
    events = recording()
    config = logs / "makerflow.toml"
    config.write_text(QUOTER_TOML)
    run = Run()
    with Broker() as b:
        ensure_topics([b.bootstrap], list(t.TOPICS))
        ticks = TopicWatch(
            b.bootstrap, t.TICKS.name, run.on_tick, clock=time.time_ns, fetch_wait_ms=1
        )
        intents = TopicWatch(
            b.bootstrap, t.ORDER_INTENTS.name, run.on_intent, clock=time.time_ns, fetch_wait_ms=1
        )
        quality = TopicWatch(b.bootstrap, t.MD_QUALITY.name, run.on_quality)
        ticks.start()
        intents.start()
        quality.start()
        assert b._proc is not None
        procs = [start(cfg, n, b.bootstrap, config, logs) for n in ("ticks", "quoter")]
        out = Sender(producer([b.bootstrap], **{"linger.ms": 0}))

        def send(e: Any) -> None:
            topic = t.MD_TRADES if isinstance(e, Trade) else t.MD_BOOK
            out.send(topic.name, topic.key_of(e), encode(e))
            out.producer.poll(0)

        try:
            # Warm-up: the snapshot and the next seconds of data (read from the beginning of
            # the fresh topics), until an intent shows both services are serving.
            snap = next(e for e in events if isinstance(e, BookSnapshot))
            start_i = events.index(snap)
            for e in events[start_i : start_i + 200]:
                send(e)
            out.flush()
            deadline = time.monotonic() + 90
            while not intents.count:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"{cfg.name}: the services did not serve; see {logs}")
                time.sleep(0.5)
            time.sleep(1.0)
            pids = {"ticks": procs[0].pid, "quoter": procs[1].pid, "broker": b._proc.pid}
            # This process's watchers pause meanwhile: the broker's figure is the services'.
            for w in (ticks, intents, quality):
                w.pause()
            time.sleep(0.5)
            run.idle_cpu = idle_cpu(pids, idle_s)
            for w in (ticks, intents, quality):
                w.resume()
            time.sleep(0.5)
            run.tick_at.clear()
            run.tick_made.clear()
            run.intent_at.clear()
            run.intent_made.clear()
            run.late = 0
            # The measured stretch continues the warm-up's update ids: the book stays valid.
            i = start_i + 200

            def at(e: Any) -> int:
                # When the recorder received it (the venue's own skew between its book and
                # trade streams), or its event time if the recording has none.
                return int(getattr(e, "recv_ts", 0) or e.ts) if pace == "recv" else int(e.ts)

            base_ts = at(events[i])
            t0 = time.perf_counter_ns()
            while i < len(events):
                e = events[i]
                due = t0 + (at(e) - base_ts) / speed
                if due - t0 > seconds * 1e9:
                    break
                wait = (due - time.perf_counter_ns()) / 1e9
                if wait > 0:
                    time.sleep(wait)
                now = time.time_ns()
                if e.ts not in run.sent and isinstance(e, Trade):
                    run.trade_ts.add(e.ts)
                run.sent.setdefault(e.ts, now)
                run.arrivals.append((now, e))
                send(e)
                i += 1
            out.flush()
            time.sleep(1.0 + (cfg.align_ms or 200) / 1000)
        finally:
            for p in procs:
                stop(p)
            ticks.close()
            intents.close()
            quality.close()
    return run


def row(name: str, xs: list[float]) -> str:
    return (
        f"{name:<42} {len(xs):>5} {pct(xs, 0.5):8.2f} {pct(xs, 0.99):8.2f}"
        f" {max(xs, default=float('nan')):8.2f}"
    )


def legs(r: Run, align_ms: int, marker_ms: int, release: str) -> dict[str, list[float]]:
    """Each hop in ms: the ticks hops over every book update that made a tick, the quoter
    hops over those that also made an intent. A service's produce time is its message's
    Kafka timestamp (1 ms resolution)."""
    ticked = [ts for ts in r.sent if ts in r.tick_at]
    both = [ts for ts in ticked if ts in r.intent_at]
    held = merge_hold_ms(r, align_ms, marker_ms, release)

    def d(a: dict[int, int], b: dict[int, int], keys: list[int]) -> list[float]:
        return [(b[ts] - a[ts]) / MS for ts in keys]

    ticks_leg = d(r.sent, r.tick_made, ticked)
    books = [ts for ts in ticked if ts not in r.trade_ts]
    trades = [ts for ts in ticked if ts in r.trade_ts]
    return {
        "update sent -> tick produced (ticks)": ticks_leg,
        "  book update sent -> its tick produced": d(r.sent, r.tick_made, books),
        "    the merge's hold of it (model)": [held.get(ts, 0.0) for ts in books],
        "  trade sent -> its tick produced": d(r.sent, r.tick_made, trades),
        "    the merge's hold of it (model) ": [held.get(ts, 0.0) for ts in trades],
        "  of it: the merge's hold (model, no hops)": [held.get(ts, 0.0) for ts in ticked],
        "  of it: transport + compute": [
            x - held.get(ts, 0.0) for x, ts in zip(ticks_leg, ticked, strict=True)
        ],
        "tick produced -> tick seen here": d(r.tick_made, r.tick_at, ticked),
        "update sent -> tick seen here": d(r.sent, r.tick_at, ticked),
        "tick produced -> intent produced (quoter)": d(r.tick_made, r.intent_made, both),
        "intent produced -> intent seen here": d(r.intent_made, r.intent_at, both),
        "update sent -> intent seen here": d(r.sent, r.intent_at, both),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured stretch per config")
    ap.add_argument("--speed", type=float, default=1.0, help="times recorded pace")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    ap.add_argument(
        "--pace",
        choices=["recv", "event"],
        default="recv",
        help="send at the recorded receive times (the venue's skew kept) or event times",
    )
    ap.add_argument(
        "--variant",
        nargs="*",
        default=["fetch.wait.max.ms=1"],
        help="the tuned configuration: consumer KEY=VALUE, producer.KEY=VALUE",
    )
    ap.add_argument("--configs", nargs="*", default=["before", "default", "tuned"])
    ap.add_argument(
        "--fetch-waits",
        nargs="*",
        type=int,
        default=[],
        help="also run the defaults with each of these consumer fetch.wait.max.ms",
    )
    ap.add_argument("--keep", type=Path, help="keep the services' logs here")
    args = ap.parse_args()
    consumer, prod = parse_variant(args.variant)
    known = {
        "default": Config("shipped defaults"),
        "nomarkers": Config(
            "defaults, release_caught_up off",
            env={"MAKERFLOW__TICKS__RELEASE_CAUGHT_UP": "none"},
        ),
        "both": Config(
            "defaults, release_caught_up both",
            env={"MAKERFLOW__TICKS__RELEASE_CAUGHT_UP": "both"},
        ),
        "before": Config(
            "as before (fetch.wait.max.ms 500, no markers)",
            consumer={"fetch.wait.max.ms": 500},
            env={"MAKERFLOW__TICKS__RELEASE_CAUGHT_UP": "none"},
        ),
        "align0": Config("align_ms 0", align_ms=0),
        "tuned": Config("defaults + " + " ".join(args.variant), None, consumer, prod),
        "tuned0": Config("align_ms 0 + " + " ".join(args.variant), 0, consumer, prod),
    }
    configs = list(args.configs)
    for f in args.fetch_waits:
        known[f"f{f}"] = Config(
            f"defaults + fetch.wait.max.ms={f}", consumer={"fetch.wait.max.ms": f}
        )
        configs.append(f"f{f}")
    logs = args.keep or Path(tempfile.mkdtemp(prefix="svc-lat-"))
    logs.mkdir(parents=True, exist_ok=True)
    from makerflow.operators.ticks import TicksConfig

    shipped_align = TicksConfig().align_ms
    shipped_release = TicksConfig().release_caught_up
    p99s: dict[str, list[float]] = {}
    p50s: dict[str, list[float]] = {}
    for k in range(args.repeat):
        for key in configs:
            cfg = known[key]
            r = measure(cfg, args.seconds, args.speed, logs, args.idle, args.pace)
            align = shipped_align if cfg.align_ms is None else cfg.align_ms
            wait = int(
                cfg.consumer.get("fetch.wait.max.ms", CONSUMER_DEFAULTS["fetch.wait.max.ms"])
            )
            release = cfg.env.get("MAKERFLOW__TICKS__RELEASE_CAUGHT_UP", shipped_release)
            hops = legs(r, align, wait + 1, release)
            cpu = ", ".join(f"{n} {v:.1f}%" for n, v in r.idle_cpu.items())
            print(
                f"\n{cfg.name} (run {k + 1}): {len(r.sent)} events sent,"
                f" {r.late} late (out_of_order); idle CPU {cpu}"
            )
            print(f"{'leg':<42} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for name, xs in hops.items():
                print(row(name, xs))
            total = hops["update sent -> intent seen here"]
            p99s.setdefault(cfg.name, []).append(pct(total, 0.99))
            p50s.setdefault(cfg.name, []).append(pct(total, 0.5))
    print(f"\nupdate -> intent over {args.repeat} run(s): best / median of each run's p50 and p99")
    for name, xs in p99s.items():
        ok = "met" if min(xs) <= TARGET_MS else "NOT met"
        print(
            f"  {name}: p50 {min(p50s[name]):.2f} / {statistics.median(p50s[name]):.2f} ms,"
            f" p99 {min(xs):.2f} / {statistics.median(xs):.2f} ms"
            f" (target p99 <= {TARGET_MS:g} ms: {ok})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
