"""Give the C heap's free memory back to the operating system, every few seconds.

A service that falls behind (a busy machine, a burst) takes its backlog in full batches:
librdkafka's fetch buffers and the messages copied out of them, each over 512 bytes
(most book updates) a ``malloc`` of its own. Once it has caught up, all of that is free
again, but glibc keeps freed memory inside its heaps (only the top of a heap goes back, and
a single live chunk above pins everything below it), so the resident size stays at the
high-water mark of the worst backlog so far: measured in ``benchmarks/service_memory.py``,
the ticks service's heap in use went back to where it started (9.5 MiB) while 5-9 MiB more
stayed resident as free heap, and its RSS rose in steps with every lag. ``malloc_trim(0)``
returns the free pages of every arena (``MADV_DONTNEED``); the next burst faults them in
again. A call runs without the GIL (``ctypes``) but holds each arena's lock while it walks
it: about 2 ms on a heap of 20 000 free chunks (100 MB), so once a second it costs well
under 1 % of a core. In the benchmark's paced runs (load 11-16 on 2 cores), the ticks
service's max/min RSS was 1.090 trimming every second and 1.111 without (the prefetch bound
and batch size in both).

Not a substitute for bounding what a burst allocates (the Kafka source's batch size does
that, see ``makerflow.sources.kafka``): this only stops a past burst from staying resident.
Python's own small-object allocator (pymalloc) is not affected: it frees an arena only when
the arena is empty.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable, Mapping

from makerflow.schemas.config import ConfigError

logger = logging.getLogger(__name__)

TRIM_EVERY_S = 1.0
"""Default period (s): a burst's free heap stays resident at most this long after it ends."""
ENV = "MAKERFLOW_MALLOC_TRIM_S"

_started: list[HeapTrimmer] = []


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


def trim_period(env: Mapping[str, str]) -> float:
    """``MAKERFLOW_MALLOC_TRIM_S`` in seconds (default :data:`TRIM_EVERY_S`; ``0``: never)."""
    raw = env.get(ENV)
    if raw is None or raw == "":
        return TRIM_EVERY_S
    try:
        every = float(raw)
    except ValueError:
        every = -1.0
    if not every >= 0:
        raise ConfigError(f"{ENV} must be a number of seconds >= 0 (0: never), got {raw!r}")
    return every


class HeapTrimmer(threading.Thread):
    """A daemon thread that calls ``malloc_trim(0)`` every ``every_s`` seconds."""

    def __init__(self, every_s: float, trim: Callable[[], int]) -> None:
        super().__init__(name="makerflow-malloc-trim", daemon=True)
        self.every_s = every_s
        self.trims = 0
        self._trim = trim
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self._trim()
            self.trims += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def start_heap_trimmer(env: Mapping[str, str]) -> HeapTrimmer | None:
    """Start the process's trimmer once (a service calls this when it builds its flow);
    None when disabled or the C library cannot trim."""
    if _started:
        return _started[0]
    every = trim_period(env)
    trim = malloc_trim()
    if every == 0 or trim is None:
        if trim is None:
            logger.info("no malloc_trim in this C library: freed heap stays resident")
        return None
    trimmer = HeapTrimmer(every, trim)
    trimmer.start()
    _started.append(trimmer)
    return trimmer
