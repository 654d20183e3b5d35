"""What one run of ``service_latency.py`` measured (:class:`Run`), its hops (:func:`legs`),
the merge's hold alone (:func:`merge_hold_ms`) and the closing table of medians over the runs
(:func:`print_table`)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message
from service_support import pct

TARGET_MS = 5.0
MS = 1e6


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
    gc_pauses: dict[str, list[float]] = field(default_factory=dict)
    """Service -> its garbage collections of 1 ms or more (ms), with ``--gc-log``."""

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
        "update sent -> intent produced": d(r.sent, r.intent_made, both),
        "update sent -> intent seen here": d(r.sent, r.intent_at, both),
    }


@dataclass
class Summary:
    """One run's figures for the closing table."""

    p50_p99: dict[str, tuple[float, float]]
    intents: int
    idle_cpu: dict[str, float]
    late: int
    gc_max_ms: float | None

    COLUMNS = {
        "book->tick": "  book update sent -> its tick produced",
        "trade->tick": "  trade sent -> its tick produced",
        "tick->intent": "tick produced -> intent produced (quoter)",
        "update->intent": "update sent -> intent produced",
        "...seen here": "update sent -> intent seen here",
    }

    @classmethod
    def of(cls, r: Run, hops: dict[str, list[float]]) -> Summary:
        figs = {c: (pct(hops[h], 0.5), pct(hops[h], 0.99)) for c, h in cls.COLUMNS.items()}
        pauses = [x for p in r.gc_pauses.values() for x in p]
        n = len(hops["update sent -> intent produced"])
        return cls(figs, n, r.idle_cpu, r.late, max(pauses, default=0.0) if r.gc_pauses else None)


def print_table(runs: dict[str, list[Summary]], repeat: int) -> None:
    """Per configuration, the median over its runs of each hop's p50 and p99 (ms), of the
    idle CPU (% of a core) and of the late events."""
    med = statistics.median
    print(
        f"\nmedian of {repeat} run(s) per configuration; p50 / p99 ms; target update->intent"
        f" p99 <= {TARGET_MS:g} ms (update->intent: to the intent's produce time; ...seen here:"
        " plus its flush and this process's 1 ms fetch)"
    )
    head = "".join(f"{c:>16}" for c in Summary.COLUMNS)
    print(f"{'configuration':<38}{head}  intents  idle CPU % ticks/quoter/broker  late")
    for name, xs in runs.items():
        cells = "".join(
            f"{med(x.p50_p99[c][0] for x in xs):7.1f} /{med(x.p50_p99[c][1] for x in xs):6.1f} "
            for c in Summary.COLUMNS
        )
        cpu = " / ".join(
            f"{med(x.idle_cpu.get(n, float('nan')) for x in xs):.0f}"
            for n in ("ticks", "quoter", "broker")
        )
        gc_max = [x.gc_max_ms for x in xs if x.gc_max_ms is not None]
        gc_note = f"  GC max {med(gc_max):.1f} ms" if gc_max else ""
        p99 = med(x.p50_p99["update->intent"][1] for x in xs)
        ok = "met" if p99 <= TARGET_MS else "not met"
        print(
            f"{name:<38}{cells}  {med(x.intents for x in xs):7.0f}  {cpu:>29}"
            f"  {med(x.late for x in xs):4.0f}{gc_note}  (target {ok})"
        )
