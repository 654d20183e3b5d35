"""Where Bytewax 0.21.1 runs things: which worker reads an input partition, and which worker a
keyed stateful step sends a key to; and the Kafka partition a producer should write a key to
so that the two are the same worker. Pure functions; the runtime (Rust) decides placement,
these only say what it decides.

Input partitions (``FixedPartitionedSource.list_parts``): every worker lists them, worker 0
collects the lists and gives each partition, in the sorted order of the names, to the worker
with the fewest so far (lowest index on a tie): ``calc_primaries`` in ``src/timely.rs``. Every
worker lists every Kafka partition, so that is a round robin over the sorted names, and the
partitions of a topic spread evenly (one topic per source: two in one would interleave).
Partition names are ``"<partition>-<topic>"`` (``makerflow.sources.kafka``): with up to ten
partitions the sorted order is the numeric one and Kafka partition ``p`` lands on worker
``p % workers``; beyond ten ``"10-t"`` sorts before ``"2-t"``, and the count per worker is
still even.

Keyed steps (``stateful_batch`` and everything built on it): the key's hash with Rust's
``DefaultHasher`` (SipHash-1-3 with zero keys, over the UTF-8 bytes and a ``0xff`` terminator),
modulo the worker count (``PartitionOp::partition`` in ``src/timely.rs``). Workers are numbered
across processes (``-i/-a``), so the same holds for any number of processes.

Aligned partitions (:func:`aligned_partition`): Kafka's murmur2 and Bytewax's SipHash are
unrelated, so with murmur2 a market read on worker A is keyed on worker B about half the time
with 2 workers, and every one of its events crosses from A to B, pickled when A and B are
processes (``benchmarks/scaling.py``: 2 processes used 2.4x the CPU of an aligned run). Writing
a key to the partition whose input partition sorts at ``siphash(key) % partitions`` puts the
reader and the keyed step on the same worker for every worker count that divides the
partition count (with up to 20 partitions, where the runtime's sort keeps the name order).
Correctness never depends on it: Bytewax routes every key to its worker either way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

_MASK = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` (Rust's ``DefaultHasher`` with ``k0 = k1 = 0``)."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v3 ^= m
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def key_worker(key: str, workers: int) -> int:
    """The worker (0-based, across all processes) a keyed step of ``workers`` sends ``key`` to."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return siphash13(key.encode() + b"\xff") % workers


def partition_workers(parts: Iterable[str], workers: int) -> dict[str, int]:
    """The worker that reads each input partition of one source, when every worker lists all
    of ``parts`` (a Kafka source does): round robin over the sorted names."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return {p: i % workers for i, p in enumerate(sorted(set(parts)))}


@lru_cache(maxsize=64)
def _name_order(partitions: int) -> tuple[int, ...]:
    # Partitions in the sorted order of their input partitions' names "<p>-<topic>": the
    # order in which the runtime deals them to the workers.
    return tuple(sorted(range(partitions), key=str))


@lru_cache(maxsize=65_536)
def aligned_partition(key: bytes, partitions: int) -> int:
    """The Kafka partition (of ``partitions``) to write ``key`` to so that the worker reading
    it is the one its keyed steps run on, for every worker count dividing ``partitions``.

    Cached: keys are markets, accounts and assets, a few per topic.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return _name_order(partitions)[siphash13(key + b"\xff") % partitions]
