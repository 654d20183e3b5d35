"""RSS of the ticks, quoter and risk services over a long replay: the recording looped 10 times.

The recorded Binance BTC/USDT spot file (2024-08-08, 346 s of depth updates and trades) is
produced to ``md.book`` / ``md.trades`` on a tansu broker on loopback ten times over, each
loop shifted in event time by the recording's span (and in update ids by its id span, with
the snapshot sent again first), so the book, the bars and the merge see one consistent
hour of market data. The ticks service (``makerflow run ticks``, the shipped defaults: live,
event-time merge with its ``align_ms`` bound), the quoter (``makerflow run quoter`` on the
ticks it writes) and risk (``makerflow run risk``, one market) run as their own processes,
tailing. The producer sends the first events, waits until every service has written its
first output, then paces the rest (``--seconds`` for the ten loops) so the services work at a
steady rate instead of draining a backlog.

Every second the RSS of each service process is sampled (psutil when installed, else
``/proc/PID/status``). Printed: RSS at 10 %, 50 %, 90 % and 100 % of the run, and the
max/min ratio of the samples after the warm-up (one loop after the service's first output);
the target is flat within 10 % (ratio <= 1.10). Then, per service, the anonymous and
file-backed RSS (``RssAnon`` / ``RssFile``) at the end of the warm-up and at the end, the most
threads seen, and how far (wall seconds) the latest output was behind the producer (as this
process's watcher sees it, its own delay included). The load average at the start and end is
printed: a busy machine is what makes a service lag. ``--keep DIR`` also writes the samples
(``rss.json``, ``rss_parts.json``); ``--env NAME=VALUE`` gives the services one more
environment variable (``MAKERFLOW_MALLOC_TRIM_S=0`` to compare without the heap trimmer).

What it found (2026-12-02, 2 shared cores, load average 4-35 during the runs):

* Before (``f591868``): ticks 1.301, 1.279, 1.331 and 1.030, risk 1.100, 1.070, 1.135 and
  1.025, quoter 1.02-1.04. What grows is anonymous memory only (file-backed 23.1 MiB
  throughout, 22 threads in ticks, 42 in risk, from start to end), in steps, each at a lag:
  the one run at 1.030 was the one whose consumers never fell behind (librdkafka's fetch
  queue at most 67 KB). In the service (glibc ``mallinfo2``, ``sys._debugmallocstats``,
  librdkafka's per-partition ``fetchq_size``, logged every 1-2 s in these runs only, ticks):
  what is *in use* returns to where it started after a lag (heap 9.4 MiB, 146 000 Python
  blocks) while the resident size does not: glibc keeps the freed heap (free 1.6 -> 8.7 MiB)
  and pymalloc the arenas (15 -> 22 MiB of 1 MiB arenas). What filled them during a lag: the
  prefetch queue of the consumer that fell behind (md.trades: up to 19 000 messages, 3.6 MB;
  50 000 and 9.4 MiB in a run with smaller batches and no bound) and the 1000-message
  batches a lagging partition hands over (book updates decoded with their levels). Neither
  state nor Python objects grow: the pure ticks logic over 20 loops holds 363 -> 364 KiB,
  the risk operator 220 -> 222 KiB (tracemalloc).
* One change at a time (one run each, two side by side on the same load; ticks / risk /
  quoter): prefetch bounded (``queued.max.messages.kbytes`` 256, ``max.partition.fetch.bytes``
  256 KiB) 1.142 / 1.068 / 1.030 next to 1.331 / 1.135 / 1.019 unbounded, and 1.247 / 1.072
  / 1.034; then batches of 100: 1.147 / 1.067 / 1.016 (pymalloc stays at 15-16 arenas);
  ``MALLOC_ARENA_MAX=2`` on top: 1.169, no gain (not kept); a 64 KiB bound instead of 256:
  1.143, no gain (on tansu the queue still reached ~1 MB, more than the bound plus a fetch,
  apparently because tansu answers with whole record batches); then ``malloc_trim`` every
  second: 1.090 / 1.086 / 1.035 next to 1.111 / 1.079 / 1.020 without it (load 11-16).
* Final tree (bound, trim every 1 s, batches back to Bytewax's 1000: see
  ``sources.kafka.BATCH_SIZE``), 10 loops, ticks / quoter / risk: 1.010 / 1.020 / 1.009
  alone on a quiet machine (load 0.6-2.8), 1.066 / 1.038 / 1.035 with three CPU burners
  beside it (load 2.5-6.3, ticks up to 0.9 s and risk 1.4 s behind); all 126 110 ticks on the
  topic in both.
* Earlier, with batches of 100 (bound, trim every 1 s), 10 loops, ticks / risk / quoter: 1.111 /
  1.070 / 1.025 and 1.090 / 1.076 / 1.028 (two side by side, load 6-12), 1.090 / 1.086 /
  1.035 (load 11-16), 1.157 / 1.097 / 1.030 (load 8-15); with ``fetch.queue.backoff.ms`` 10
  added (for the drain rate, below), 1.110 / 1.021 / 1.010 and 1.108 / 1.016 / 1.011 (two
  side by side, load 2-8), 1.033 / 1.014 / 1.015 (alone, load 2-4); 20 loops in 140 s: 1.119
  / 1.051 / 1.040 (load 2-3); see the next point but one for which runs wrote every tick.
  Risk and the quoter are within 10 % in every run, ticks in three of eight, just over it in
  four (before: none of the runs that lagged). Ticks now starts at 50-51 MiB and stays there
  until it lags; in the last two runs it fell 20-30 s behind near the end, rose to 55 MiB
  meanwhile and went back to 52.7-52.9 (+4 %) once caught up (before: 52 -> 62-70 MiB in
  steps that stayed). Anonymous memory at the end 30-31 MiB (before 38-47 in the runs that
  lagged).
* The price is the rate at which a service drains a backlog (the ticks service over
  ``scaling.py``'s topics, one worker, runs interleaved, load 2): 0.73-0.76x of f591868 with
  all of it, 0.87-0.88x with batches of 1000 instead of 100; without the 10 ms backoff the
  bound alone made it 0.6x (librdkafka waits 1 s before fetching again once over the bound).
* The runs that "stopped writing ticks" (f591868 alone at load 2: 58 826 of 126 110; 76 748
  and 113 409 in two shipped runs) were this benchmark's watcher, not the service: with
  ``fetch.wait.max.ms`` 1 its fetches on tansu came back empty once the ticks topic held a few
  thousand record batches (tansu gives a fetch no more than the wait to find the records, and
  takes longer the longer the partition; ``benchmarks/tansu_fetch_depth.py``). Seen in a run
  at 66 968 and 63 299: a stack dump of the ticks process (py-spy) showed its worker writing
  (``_EventSinkPartition._flush``), its producer's log every ProduceRequest of the 126 110
  ticks answered without error and with no pause over 1 s, the watcher's consumer sent
  fetches at offset 58 126 for seconds and got 71-byte empty answers, and a fresh reader
  found all 126 110 on the topic. The watcher now waits 100 ms per fetch
  (``service_support.WATCH_FETCH_WAIT_MS``), and the ticks on the topic are counted afresh at
  the end. Five runs since (load 1-4): 126 110 in three (on the topic too where it was
  counted), 125 953 in two, and in the one with the fresh count the topic held 125 953 as
  well: there the service itself wrote 157 fewer, the same number both times (not explained
  yet; that the run ends "quiet 3 s" after the producer while the last ticks are held in the
  merge is a guess). The RSS ratios of the runs that "stalled" (1.003, 1.108,
  1.090) were of a service that was working.
* What is left is the working set of a lag while it lasts (the ratio takes the highest
  sample): fetched and decoded messages, outputs waiting for the broker. A service that
  lags longer than here holds more while it does, and gives the heap part back within a
  second of catching up; pymalloc's arenas it keeps until they empty.

    python benchmarks/service_memory.py               # 10 loops in ~70 s
    python benchmarks/service_memory.py --loops 3 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from service_support import (
    QUOTER_TOML,
    TopicWatch,
    loop,
    recording,
    rss_kb,
    rss_parts_kb,
    seq_span,
    service_env,
    span_ns,
    start_service,
    stop,
)

from makerflow.broker import Broker
from makerflow.kafka_admin import Sender, ensure_topics, producer, read_topic
from makerflow.operators.ticks import TicksConfig
from makerflow.schemas import topics as t
from makerflow.schemas.codec import encode
from makerflow.schemas.events import Trade

TARGET = 1.10
CHUNK = 50
PRIME = 500
READY_TIMEOUT_S = 180.0
# The risk service of tests/integration/test_ops_recovery_services.py, on the quoter's market.
RISK_TOML = """
[risk]
window_ms = 2000
slide_ms = 200
[[risk.markets]]
venue = "binance"
symbol = "BTC/USDT"
index_basket = "BTC"
"""
ALIGN_MS_LIVE = TicksConfig().align_ms


def feed(
    brokers: str,
    loops: int,
    seconds: float,
    ready: threading.Event,
    done: threading.Event,
    fed_ts: list[int],
) -> None:
    """The recording ``loops`` times, paced evenly over ``seconds``, in recorded order across
    the two topics (small chunks, so neither topic runs far ahead of the other).
    ``fed_ts[0]`` is the event time of the last event sent.

    The first ``PRIME`` events go at once; the pace starts when ``ready`` is set (every
    service has written its first output), so a slow start-up leaves no backlog to drain."""
    events = recording()
    span, seqs = span_ns(events), seq_span(events)
    total = loops * len(events)
    out = Sender(producer([brokers]))
    sent = 0
    t0 = time.monotonic()
    for k in range(loops):
        for e in loop(events, k, span, seqs):
            topic = t.MD_TRADES if isinstance(e, Trade) else t.MD_BOOK
            out.send(topic.name, topic.key_of(e), encode(e))
            sent += 1
            fed_ts[0] = e.ts
            if sent == PRIME:
                out.producer.flush(10)
                ready.wait(READY_TIMEOUT_S)
                t0 = time.monotonic() - seconds * sent / total
            if sent % CHUNK == 0:
                out.producer.poll(0)
                ahead = t0 + seconds * sent / total - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    out.flush()
    done.set()


def at_fraction(samples: list[tuple[float, int]], f: float) -> int:
    """The sample nearest ``f`` of the run's duration."""
    end = samples[-1][0]
    return min(samples, key=lambda s: abs(s[0] - f * end))[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=70.0, help="producer pace for all loops")
    ap.add_argument("--keep", type=Path, help="keep the services' logs here")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more environment variable for the services (repeatable), to compare",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="svc-mem-"))
    logs = args.keep or tmp
    logs.mkdir(parents=True, exist_ok=True)
    config = tmp / "makerflow.toml"
    config.write_text(QUOTER_TOML + RISK_TOML)
    samples: dict[str, list[tuple[float, int]]] = {"ticks": [], "quoter": [], "risk": []}
    parts: dict[str, list[tuple[float, dict[str, int]]]] = {n: [] for n in samples}
    extra = dict(kv.split("=", 1) for kv in args.env)
    with Broker() as b:
        ensure_topics([b.bootstrap], list(t.TOPICS))
        # The merge holds what arrives within align_ms of event time; replayed `speedup`
        # times faster than recorded, the live bound (200 ms) scaled by it holds as much
        # wall time (and as many events) as it would live.
        speedup = span_ns(recording()) * args.loops / 1e9 / args.seconds
        align_ms = int(ALIGN_MS_LIVE * speedup)
        env = service_env(
            b.bootstrap,
            config,
            MAKERFLOW_TAIL="1",
            MAKERFLOW__TICKS__ALIGN_MS=str(align_ms),
            **extra,
        )
        procs = {n: start_service(n, env, logs / f"{n}.log") for n in samples}
        # Event time of each service's latest output: behind the producer's by the service's
        # lag (the prefetch queue of a lagging consumer fills; one that keeps up stays empty).
        out_ts: dict[str, int] = {}

        def note_ts(name: str, topic: t.Topic[Any]) -> Callable[[Message, int], None]:
            def on(m: Message, _: int) -> None:
                # Never raise: an exception here would end the watcher's thread, and with it
                # the count and the "outputs quiet" end of the run.
                try:
                    ts = getattr(topic.codec.decode(m.value()), "ts", None)
                except Exception:
                    return
                if isinstance(ts, int) and ts > out_ts.get(name, 0):
                    out_ts[name] = ts

            return on

        ticks_out = TopicWatch(b.bootstrap, t.TICKS.name, note_ts("ticks", t.TICKS))
        intents = TopicWatch(b.bootstrap, t.ORDER_INTENTS.name)
        states = TopicWatch(b.bootstrap, t.RISK_STATE.name, note_ts("risk", t.RISK_STATE))
        fed_ts = [0]
        lags: dict[str, list[tuple[float, float]]] = {"ticks": [], "risk": []}
        kinds: Counter[str] = Counter()
        quality = TopicWatch(
            b.bootstrap,
            t.MD_QUALITY.name,
            lambda m, _: kinds.update([t.MD_QUALITY.codec.decode(m.value()).kind]),
        )
        for w in (ticks_out, intents, states, quality):
            w.start()
        done = threading.Event()
        ready = threading.Event()
        producer = threading.Thread(
            target=feed,
            args=(b.bootstrap, args.loops, args.seconds, ready, done, fed_ts),
            daemon=True,
        )
        load_at_start = os.getloadavg()[0]
        t0 = time.monotonic()
        fed_at: float | None = None
        # A service's warm-up ends one loop after its first output: under load the start-up
        # (configuration check, then the exec into the Bytewax runner) takes longer than a
        # loop, and its peak RSS is the checking process's, not the service's.
        outputs = {"ticks": ticks_out, "quoter": intents, "risk": states}
        first_out: dict[str, float] = {}
        producer.start()
        try:
            while True:
                now = time.monotonic() - t0
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} exited with {p.returncode}; see {logs}")
                    kb = rss_kb(p.pid)
                    if kb is not None:
                        samples[name].append((now, kb))
                    kinds_kb = rss_parts_kb(p.pid)
                    if kinds_kb is not None:
                        parts[name].append((now, kinds_kb))
                for name, lag in lags.items():
                    if name in out_ts and not done.is_set():
                        lag.append((now, (fed_ts[0] - out_ts[name]) / 1e9 / speedup))
                for name, w in outputs.items():
                    if w.count and name not in first_out:
                        first_out[name] = now
                if len(first_out) == len(outputs):
                    ready.set()
                if done.is_set() and fed_at is None:
                    fed_at = now
                if done.is_set() and min(w.quiet_for() for w in (ticks_out, intents, states)) > 3.0:
                    break
                if now > args.seconds + READY_TIMEOUT_S + 60:
                    print("the services did not catch up within 60 s of the last loop")
                    break
                time.sleep(1.0)
        finally:
            for p in procs.values():
                stop(p)
            for w in (ticks_out, intents, states, quality):
                w.close()
        # What the topic holds, read afresh once the services are stopped: a count that falls
        # short here is the service's; one that falls short only above was the watcher's.
        on_topic = len(read_topic([b.bootstrap], t.TICKS.name, idle=3.0))
    per_loop = len(recording())
    print(
        f"{per_loop * args.loops} events ({args.loops} loops of {per_loop})"
        f" in {samples['ticks'][-1][0]:.0f} s;"
        f" {ticks_out.count} ticks, {intents.count} intents, {states.count} risk states,"
        f" {quality.count} quality events"
        f" ({dict(kinds)})"
    )
    print(f"ticks on the topic afterwards: {on_topic} (the watcher counted {ticks_out.count})")
    print(f"the producer finished at {fed_at or 0:.0f} s, the outputs were quiet 3 s later")
    print(f"replayed {speedup:.0f}x faster than recorded; [ticks] align_ms = {align_ms}")
    print(
        f"load average (1 min) {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the"
        f" end, on {os.cpu_count()} CPUs; extra environment: {extra or 'none'}"
    )
    loop_s = args.seconds / args.loops
    first = ", ".join(f"{n} {first_out.get(n, float('nan')):.0f} s" for n in samples)
    print(f"first output: {first}; RSS counted from one loop ({loop_s:.0f} s) later")
    print(f"{'service':<8} {'10 %':>9} {'50 %':>9} {'90 %':>9} {'100 %':>9} {'max/min':>8}  MiB")
    ok = True
    for name, ss in samples.items():
        at = [at_fraction(ss, f) / 1024 for f in (0.1, 0.5, 0.9, 1.0)]
        warm_until = first_out.get(name, 0.0) + loop_s
        after = [kb for s, kb in ss if s >= warm_until]
        ratio = max(after) / min(after)
        ok &= ratio <= TARGET
        cols = " ".join(f"{x:9.1f}" for x in at)
        print(f"{name:<8} {cols} {ratio:8.3f}")
    print(
        f"{'service':<8} {'anon':>13} {'file':>13} {'threads':>8}"
        f" {'lag p50':>8} {'lag max':>8}  MiB at warm-up end -> at the end; lag: wall s the"
        " latest output is behind the producer (the watcher's own delay included)"
    )
    for name, ps in parts.items():
        warm_until = first_out.get(name, 0.0) + loop_s
        after = [k for s, k in ps if s >= warm_until] or [k for _, k in ps]
        a0, a1 = after[0]["anon"] / 1024, after[-1]["anon"] / 1024
        f0, f1 = after[0]["file"] / 1024, after[-1]["file"] / 1024
        threads = max(k["threads"] for k in after)
        ls = sorted(x for s, x in lags.get(name, []) if s >= warm_until)
        p50 = f"{ls[len(ls) // 2]:8.2f}" if ls else f"{'-':>8}"
        top = f"{ls[-1]:8.2f}" if ls else f"{'-':>8}"
        print(f"{name:<8} {a0:5.1f} -> {a1:5.1f} {f0:5.1f} -> {f1:5.1f} {threads:8d} {p50} {top}")
    if args.keep:
        (args.keep / "rss.json").write_text(json.dumps(samples))
        (args.keep / "rss_parts.json").write_text(json.dumps({"parts": parts, "lags": lags}))
    print(f"target: max/min after warm-up <= {TARGET}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
