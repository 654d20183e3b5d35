"""Where Bytewax 0.21.1 runs things: which worker reads an input partition, and which worker a
keyed stateful step sends a key to. Pure functions, for tests, benchmarks and the operations
notes; the runtime (Rust) decides, these only say what it decides.

Input partitions (``FixedPartitionedSource.list_parts``): every worker lists them, worker 0
collects the lists and gives each partition, in the sorted order of the names, to the worker
with the fewest so far (lowest index on a tie): ``calc_primaries`` in ``src/timely.rs``. Every
worker lists every Kafka partition, so that is a round robin over the sorted names, and the
partitions of a topic spread evenly. Partition names are ``"<partition>-<topic>"`` with the
number zero-padded (``makerflow.sources.kafka``), so the sorted order is the numeric one and
Kafka partition ``p`` lands on worker ``p % workers``.

Keyed steps (``stateful_batch`` and everything built on it): the key's hash with Rust's
``DefaultHasher`` (SipHash-1-3 with zero keys, over the UTF-8 bytes and a ``0xff`` terminator),
modulo the worker count (``PartitionOp::partition`` in ``src/timely.rs``). Workers are numbered
across processes (``-i/-a``), so the same holds for any number of processes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

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
