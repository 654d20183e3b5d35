"""What the service benchmarks share: the recording looped in event time, the services run as
their own processes under ``makerflow run`` (the Bytewax runner), their RSS, and a consumer
thread that watches an output topic.

Not a benchmark itself: ``service_memory.py`` and ``service_latency.py`` import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, Message, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade  # noqa: E402
from makerflow.sources.recorded import read_recorded  # noqa: E402

# shared/ sits beside the repository (or beside the worktrees' folder).
DATA = next(
    (
        d / "shared" / "data" / "binance" / "spot" / "btcusdt_20240808.gz"
        for d in (REPO.parent, REPO.parent.parent)
        if (d / "shared").is_dir()
    ),
    REPO.parent / "shared" / "data" / "binance" / "spot" / "btcusdt_20240808.gz",
)
FIXTURE = REPO / "tests" / "fixtures" / "md" / "binance_spot_btcusdt_20240808_head6000.gz"

# The quoter of tests/integration/test_ops_recovery_services.py: quotes BTC/USDT from the
# first tick (no warm-up, no minimum quote lifetime), so every move of the top can requote.
QUOTER_TOML = """
[quoting]
id_namespace = "bench"
[quoting.defaults]
warmup_s = 0.0
sigma_initial = 4.0
min_quote_lifetime_s = 0.0
levels = 2
[[quoting.markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.01
lot_size = 0.00001
min_qty = 0.00001
min_notional = 5.0
index_basket = "BTC"
"""


def recording(path: Path | None = None) -> list[Any]:
    """The recorded BTC/USDT spot events (the snapshot first of the book events)."""
    src = path or (DATA if DATA.exists() else FIXTURE)
    return [e for e in read_recorded(src) if not isinstance(e, DeadLetter)]


def span_ns(events: list[Any]) -> int:
    """The recording's event-time span plus one millisecond, the shift between two loops."""
    ts = [e.ts for e in events]
    return max(ts) - min(ts) + 1_000_000


def seq_span(events: list[Any]) -> int:
    """Update ids one loop covers: a loop's snapshot must be newer than the last loop's book
    (the book keeps its book against an older snapshot)."""
    seqs = [e.seq for e in events if isinstance(e, BookSnapshot)]
    seqs += [e.last_seq for e in events if isinstance(e, BookDelta)]
    return max(seqs) - min(seqs) + 1


def loop(events: list[Any], k: int, span: int, seqs: int) -> Iterator[Any]:
    """Loop ``k`` of the recording: event times (and receive times) shifted by ``k * span``,
    update ids by ``k * seqs``, trade ids made unique per loop, and the snapshot sent first
    so the book restarts from it each loop."""
    shift, sshift = k * span, k * seqs
    snaps = [e for e in events if isinstance(e, BookSnapshot)]
    rest = [e for e in events if not isinstance(e, BookSnapshot)]
    for e in [*snaps, *rest]:
        changes: dict[str, Any] = {"ts": e.ts + shift}
        if getattr(e, "recv_ts", 0):
            changes["recv_ts"] = e.recv_ts + shift
        if isinstance(e, Trade):
            changes["trade_id"] = f"{e.trade_id}-{k}"
        elif isinstance(e, BookSnapshot):
            changes["seq"] = e.seq + sshift
        elif isinstance(e, BookDelta):
            changes["first_seq"] = e.first_seq + sshift
            changes["last_seq"] = e.last_seq + sshift
            if e.prev_seq is not None:
                changes["prev_seq"] = e.prev_seq + sshift
        yield msgspec.structs.replace(e, **changes)


def service_env(brokers: str, config: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAKERFLOW_")}
    return base | {
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_BROKERS": brokers,
        "MAKERFLOW_CONFIG": str(config),
        "MAKERFLOW_METRICS_PORT": "0",
        "MAKERFLOW_LOG_LEVEL": "WARNING",
        "MAKERFLOW_WALL_CLOCK": "0",
        **extra,
    }


def start_service(
    name: str, env: dict[str, str], log: Path, args: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """``makerflow run NAME``: it execs the Bytewax runner, so the pid is the service's."""
    out = open(log, "ab")  # noqa: SIM115 (the child keeps it)
    cmd = [sys.executable, "-m", "makerflow.cli", "run", name, *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def rss_parts_kb(pid: int) -> dict[str, int] | None:
    """``RssAnon`` (heap, arenas, thread stacks), ``RssFile`` (mapped code and libraries) and
    ``Threads`` of ``/proc/PID/status``: what part of the RSS moves, and whether threads come
    and go (each has its own malloc arena and stack)."""
    want = {"RssAnon:": "anon", "RssFile:": "file", "Threads:": "threads"}
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] in want:
                out[want[fields[0]]] = int(fields[1])
    except OSError:
        return None
    return out or None


def rss_kb(pid: int) -> int | None:
    """Resident set size in KiB (psutil when installed, else /proc/PID/status VmRSS)."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss // 1024)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


WATCH_FETCH_WAIT_MS = 100
"""A watcher's fetch wait: what tansu may spend finding records in a long partition (see
:class:`TopicWatch`); 8000 one-record batches took 5-10 ms on 2 loaded cores."""


class TopicWatch(threading.Thread):
    """Consumes a topic from its end (``from_end``) or beginning; counts messages, remembers
    when the last arrived, and hands each one (with its arrival time, ``clock()``, by default
    ``perf_counter_ns``) to
    ``on_message``.

    ``fetch_wait_ms`` is the consumer's ``fetch.wait.max.ms``. tansu gives a fetch no more
    than that to *find* the records, and its memory storage takes longer the more record
    batches the partition holds: a fetch that runs out of time comes back empty, and so does
    every retry. At 1 ms a watcher saw nothing at all of a partition of 8000 one-record
    batches, and in ``service_memory.py`` (ticks: ~4500 batches) it stopped counting half-way
    while the service went on writing every tick. The default leaves room for that; a
    latency measurement (where an idle fetch's wait delays the next arrival) passes 1."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        on_message: Callable[[Message, int], None] | None = None,
        from_end: bool = False,
        clock: Callable[[], int] = time.perf_counter_ns,
        fetch_wait_ms: int = WATCH_FETCH_WAIT_MS,
    ) -> None:
        super().__init__(daemon=True)
        self._clock = clock
        self.count = 0
        self.last_at = time.monotonic()
        self._halt = threading.Event()
        self._pause = threading.Event()
        self._on = on_message
        self._c = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": f"bench-{topic}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
                "fetch.min.bytes": 1,
            }
        )
        meta = self._c.list_topics(topic, timeout=10)
        offset = -1 if from_end else 0  # OFFSET_END / the first offset
        self._c.assign([TopicPartition(topic, p, offset) for p in meta.topics[topic].partitions])

    def run(self) -> None:
        paused = False
        try:
            while not self._halt.is_set():
                if self._pause.is_set() != paused:
                    paused = not paused
                    parts = self._c.assignment()
                    self._c.pause(parts) if paused else self._c.resume(parts)
                # poll, not consume: consume(n, timeout) waits for n messages or the timeout.
                m = self._c.poll(0.05)
                if m is not None:
                    if m.error() is not None:
                        continue
                    now = self._clock()
                    self.count += 1
                    self.last_at = time.monotonic()
                    if self._on is not None:
                        self._on(m, now)
        finally:
            self._c.close()

    def pause(self) -> None:
        """Stop fetching (an idle measurement must not count this watcher's fetches). The
        watcher's own thread pauses its consumer: a pause from here would wait for its poll."""
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_at

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]
