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

Configurations (``--configs``): ``default`` (the shipped defaults: the event-time merge),
``lowlat`` (the low-latency profile, ``[ticks] align_ms = 0``: arrival order, late trades
reported), ``default1`` / ``lowlat1`` (the same with ``MAKERFLOW_KAFKA_FETCH_WAIT_MS=1``: every
consumer waits 1 ms), ``lowlat1-nagle`` (and TCP_NODELAY on every client), ``nofreeze`` /
``lowlat-nofreeze`` (the start-up heap given back to the garbage collector), ``before`` (the
old consumer wait, 500 ms, no markers), ``nomarkers`` (``[ticks] release_caught_up =
"none"``), ``both`` (markers from both topics), ``tuned`` / ``tuned0`` (``--variant``, by
default every consumer's ``fetch.wait.max.ms=1``), ``--fetch-waits N ...``. ``--gc-log``
logs the services' garbage collections of 1 ms or more. A variant's Kafka or GC settings are
applied by a small launcher that updates the connector defaults and starts the same flow
under Bytewax's ``cli_main`` (what ``python -m bytewax.run`` calls). The closing table has,
per configuration, the median over the runs of each hop's p50 and p99, of the idle CPU and
of the late events; update -> intent is to the intent's produce time (its Kafka timestamp:
what reaches orders.intents, short of its flush), "...seen here" adds the flush and this
process's own fetch.

What it found (2026-12-02, 2 cores shared with other engineers' runs, load average 5-24;
30 s at recorded receive times, ~160 book updates and ~155 trades with a tick, 12 intents a
run; p50 / p99 ms, median of 3 runs; update->intent to the intent's produce time):

                          book->tick  trade->tick  tick->intent  update->intent  idle CPU %     late
                                                                                 ticks/quoter/broker
shipped defaults           148 / 390    20 / 271     7 / 100      106 / 210       8 / 11 / 23   13
low latency (align_ms 0)   4.8 / 118   4.9 / 88      6 / 22      11.5 / 136       8 / 11 / 22   23
defaults + every wait 1 ms 130 / 338    11 / 198     6 / 17        92 / 349      10 / 22 / 54    1
align_ms 0 + wait 1 ms     4.3 / 72    4.9 / 45      6 / 33      10.8 / 101       9 / 20 / 52   19

A second round (20 s, 8 intents a run), update->intent: defaults 101 / 208, low latency
13 / 58, low latency + wait 1 ms 18 / 116, low latency with the heap unfrozen 31 / 176. A
third (30 s, 12 intents, load average 7-11): defaults 86 / 209, low latency 9.5 / 87, low
latency + wait 1 ms 10.6 / 30 (broker idle 18 -> 61 %). No garbage collection of
1 ms or more in any measured stretch, frozen or not (``--gc-log``). The tails (100-600 ms)
come and go with the machine's load, in every configuration.

Found on 2026-12-01 (same machine, load average 5-11; 12 s, 7-8 intents a run):

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

* 2026-12-02: the low-latency profile. ``align_ms = 0`` used to turn the merge off and apply
  a trade behind a later book update silently; it now goes through the merge with no hold
  (``EventTimeMerger(max_lag_ns=0)``), so the late ones are reported (``late`` above). It
  takes the merge's hold out: update -> intent ~105 -> ~12 ms p50. What is left is three
  Kafka hops (tansu's fetch wait, Bytewax's 1 ms cooldown after an empty poll, the sink's
  flush round trip) and the machine's scheduling; a 1 ms fetch wait gave no steady gain here
  and doubled the broker's idle CPU, so 5 ms stays. The services freeze their start-up heap
  out of the garbage collector (a full collection of it: 20-24 ms of CPU).

    python benchmarks/service_latency.py                  # the four profiles, ~3 minutes
    python benchmarks/service_latency.py --repeat 3 --seconds 30 --gc-log   # the README table
    python benchmarks/service_latency.py --repeat 2 --configs before nomarkers default both tuned
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_report import Run, Summary, legs, print_table, row
from service_support import (
    QUOTER_TOML,
    REPO,
    TopicWatch,
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

# Starts a service flow with connector settings changed: the consumer's on every Kafka
# input (merged over the source's add_config) and the producer's (PRODUCER_DEFAULTS).
LAUNCHER = """
import json, os, sys
from datetime import timedelta
import makerflow.sinks.kafka as sinks
import makerflow.sources.kafka as sources
cfg = json.loads(os.environ["BENCH_KAFKA"])
sinks.PRODUCER_DEFAULTS.update(cfg["producer"])
import gc, time
if cfg.get("gc_log"):
    # Every collection of 1 ms or more, as it ends: (generation, ms).
    log, began = open(cfg["gc_log"], "a", buffering=1), [0]
    def on_gc(phase, info):
        if phase == "start":
            began[0] = time.perf_counter_ns()
        elif (ms := (time.perf_counter_ns() - began[0]) / 1e6) >= 1.0:
            log.write(f"{info['generation']} {ms:.2f}\\n")
    gc.callbacks.append(on_gc)
_build = sources.LagReportingKafkaSource.build_part
def build_part(self, step_id, for_part, resume_state):
    self._add_config = {**self._add_config, **cfg["consumer"]}
    return _build(self, step_id, for_part, resume_state)
sources.LagReportingKafkaSource.build_part = build_part
import importlib
from bytewax.run import cli_main
flow = importlib.import_module("makerflow.flows." + sys.argv[1]).flow
if not cfg.get("gc_freeze", True):
    gc.unfreeze()  # as before flows.common.freeze_start_up_heap
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
    gc_freeze: bool = True
    """False: the services' start-up heap is unfrozen again (as before the freeze)."""
    gc_log: bool = False
    """Log the services' garbage collections of 1 ms or more (``--gc-log``)."""

    @property
    def launched(self) -> bool:
        return bool(
            self.consumer or self.producer or self.epoch_ms or not self.gc_freeze or self.gc_log
        )


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    t0, c0 = time.monotonic(), {n: cpu_seconds(p) for n, p in pids.items()}
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {n: 100 * (cpu_seconds(p) - c0[n]) / dt for n, p in pids.items()}


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
        {
            "consumer": cfg.consumer,
            "producer": cfg.producer,
            "epoch_ms": cfg.epoch_ms,
            "gc_freeze": cfg.gc_freeze,
            "gc_log": str(gc_log(logs, cfg, name)) if cfg.gc_log else None,
        }
    )
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, name],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def gc_log(logs: Path, cfg: Config, name: str) -> Path:
    return logs / f"{cfg.name}-{name}.gc"


def gc_pauses(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]


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
            # Only the measured stretch's collections (a log may hold earlier runs' too).
            gc_before = {n: len(gc_pauses(gc_log(logs, cfg, n))) for n in ("ticks", "quoter")}
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
            run.gc_pauses = {n: gc_pauses(gc_log(logs, cfg, n))[k:] for n, k in gc_before.items()}
        finally:
            for p in procs:
                stop(p)
            ticks.close()
            intents.close()
            quality.close()
    return run


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
    ap.add_argument("--configs", nargs="*", default=["default", "lowlat", "default1", "lowlat1"])
    ap.add_argument(
        "--fetch-waits",
        nargs="*",
        type=int,
        default=[],
        help="also run the defaults with each of these consumer fetch.wait.max.ms",
    )
    ap.add_argument("--gc-log", action="store_true", help="log the services' GC pauses >= 1 ms")
    ap.add_argument("--keep", type=Path, help="keep the services' logs here")
    args = ap.parse_args()
    consumer, prod = parse_variant(args.variant)
    arrival = {"MAKERFLOW__TICKS__ALIGN_MS": "0"}
    wait1 = {"MAKERFLOW_KAFKA_FETCH_WAIT_MS": "1"}
    known = {
        "default": Config("shipped defaults (event-time merge)"),
        "lowlat": Config("low-latency profile (align_ms 0)", env=arrival),
        "default1": Config("defaults + every fetch wait 1 ms", env=wait1),
        "lowlat1": Config("align_ms 0 + every fetch wait 1 ms", env={**arrival, **wait1}),
        "lowlat1-nagle": Config(
            "align_ms 0 + wait 1 ms + TCP_NODELAY",
            env={**arrival, **wait1},
            consumer={"socket.nagle.disable": True},
            producer={"socket.nagle.disable": True},
        ),
        "nofreeze": Config("defaults, GC heap not frozen", gc_freeze=False),
        "lowlat-nofreeze": Config("align_ms 0, GC heap not frozen", env=arrival, gc_freeze=False),
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
        "tuned": Config("defaults + " + " ".join(args.variant), None, consumer, prod),
        "tuned0": Config("align_ms 0 + " + " ".join(args.variant), 0, consumer, prod),
    }
    configs = list(args.configs)
    for f in args.fetch_waits:
        known[f"f{f}"] = Config(
            f"defaults + fetch.wait.max.ms={f}", consumer={"fetch.wait.max.ms": f}
        )
        configs.append(f"f{f}")
    if args.gc_log:
        for key in configs:
            known[key].gc_log = True
    logs = args.keep or Path(tempfile.mkdtemp(prefix="svc-lat-"))
    logs.mkdir(parents=True, exist_ok=True)
    from makerflow.operators.ticks import TicksConfig

    shipped_align = TicksConfig().align_ms
    shipped_release = TicksConfig().release_caught_up
    runs: dict[str, list[Summary]] = {}
    for k in range(args.repeat):
        for key in configs:
            cfg = known[key]
            r = measure(cfg, args.seconds, args.speed, logs, args.idle, args.pace)
            env_align = cfg.env.get("MAKERFLOW__TICKS__ALIGN_MS")
            align = int(env_align) if env_align is not None else shipped_align
            if cfg.align_ms is not None:
                align = cfg.align_ms
            wait = int(
                cfg.consumer.get(
                    "fetch.wait.max.ms",
                    cfg.env.get(
                        "MAKERFLOW_KAFKA_FETCH_WAIT_MS", CONSUMER_DEFAULTS["fetch.wait.max.ms"]
                    ),
                )
            )
            release = cfg.env.get("MAKERFLOW__TICKS__RELEASE_CAUGHT_UP", shipped_release)
            hops = legs(r, align, wait + 1, release)
            cpu = ", ".join(f"{n} {v:.1f}%" for n, v in r.idle_cpu.items())
            print(
                f"\n{cfg.name} (run {k + 1}): {len(r.sent)} events sent,"
                f" {r.late} late (out_of_order); idle CPU {cpu}"
            )
            for n, pauses in r.gc_pauses.items():
                print(
                    f"  {n}: {len(pauses)} GC pauses >= 1 ms, max {max(pauses, default=0):.1f} ms"
                )
            print(f"{'leg':<42} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for name, xs in hops.items():
                print(row(name, xs))
            runs.setdefault(cfg.name, []).append(Summary.of(r, hops))
            sys.stdout.flush()
    print_table(runs, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
