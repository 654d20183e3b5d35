"""Input partitions spread evenly over workers and processes: a real run of the services'
Kafka source over a 4-partition topic on the broker, recording which worker read each
partition, with 2 and 4 workers in one process and with 2 processes (``cluster_main`` with
two addresses, one thread each), and a 12-partition topic on 4 workers.

A worker is told apart by its thread; a keyed step after the input names each thread's worker
index (the keys it receives route there), so the test also checks
:mod:`makerflow.placement`'s account of the runtime: partitions dealt round robin in the
sorted order of their names, key ``k`` on ``key_worker(k, workers)``.

Aligned partitions: what makerflow's producers write is read on the worker its keyed step
runs on, so no event crosses between workers; murmur2 (any other Kafka client) makes them
cross.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main
from confluent_kafka import Producer

from makerflow.broker import Broker, free_port
from makerflow.kafka_admin import Sender, ensure_topics, producer
from makerflow.placement import key_worker, partition_workers
from makerflow.sources.kafka import LagReportingKafkaSource

PARTITIONS = 4
KEYS = [f"binance:K{i}/USDT" for i in range(16)]


def fill(brokers: str, topic: str, partitions: int = PARTITIONS) -> None:
    ensure_topics([brokers], [topic], partitions=partitions)
    p = Producer({"bootstrap.servers": brokers})
    for i, key in enumerate(KEYS):
        # Explicit partitions: every partition holds keys, whatever the key hash says.
        p.produce(topic, value=b"x", key=key.encode(), partition=i % partitions)
    assert p.flush(10) == 0


def run(brokers: str, topic: str, workers_per_proc: int, procs: int) -> dict[str, Any]:
    """Which thread read which partition, and which thread each key was routed to."""
    read: dict[int, set[int]] = defaultdict(set)
    routed: dict[int, set[str]] = defaultdict(set)
    read_keys: dict[str, set[int]] = defaultdict(set)
    lock = threading.Lock()

    def saw(_step: str, msg: Any) -> None:
        with lock:
            read[msg.partition].add(threading.get_ident())
            read_keys[msg.key.decode()].add(threading.get_ident())

    def keyed(state: None, key: str) -> tuple[None, str]:
        with lock:
            routed[threading.get_ident()].add(key)
        return None, key

    flow = Dataflow("spread")
    raw = op.input(
        "in", flow, LagReportingKafkaSource([brokers], [topic], tail=False, batch_size=4)
    )
    op.inspect("read", raw, saw)
    keys = op.key_on("key", op.map("k", raw, lambda m: m.key.decode()), lambda k: k)
    op.inspect("routed", op.stateful_map("route", keys, keyed), lambda *_: None)
    if procs == 1:
        cluster_main(flow, [], 0, worker_count_per_proc=workers_per_proc)
    else:
        addrs = [f"127.0.0.1:{free_port()}" for _ in range(procs)]
        errors: list[BaseException] = []

        def proc(i: int) -> None:
            try:
                cluster_main(flow, addrs, i, worker_count_per_proc=workers_per_proc)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=proc, args=(i,)) for i in range(procs)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert not errors, errors
    return {"read": dict(read), "routed": dict(routed), "read_keys": dict(read_keys)}


@pytest.mark.parametrize(
    ("workers_per_proc", "procs", "partitions"),
    [(2, 1, 4), (4, 1, 4), (1, 2, 4), (4, 1, 12)],
    ids=str,
)
def test_partitions_spread_evenly_over_workers(
    broker: Broker,
    unique: Callable[[str], str],
    workers_per_proc: int,
    procs: int,
    partitions: int,
) -> None:
    topic = unique("spread")
    fill(broker.bootstrap, topic, partitions)
    workers = workers_per_proc * procs
    got = run(broker.bootstrap, topic, workers_per_proc, procs)

    # Every partition is read by exactly one worker, and every worker reads as many.
    assert sorted(got["read"]) == list(range(partitions))
    assert all(len(threads) == 1 for threads in got["read"].values()), got["read"]
    per_worker = defaultdict(list)
    for part, threads in got["read"].items():
        per_worker[next(iter(threads))].append(part)
    assert sorted(len(v) for v in per_worker.values()) == [partitions // workers] * workers

    # Each thread's worker index, from the keys routed to it.
    index_of = {}
    for thread, keys in got["routed"].items():
        indices = {key_worker(k, workers) for k in keys}
        assert len(indices) == 1, f"keys of one thread route to workers {indices}"
        index_of[thread] = indices.pop()
    assert sorted(index_of.values()) == list(range(workers))
    expected = partition_workers([f"{p}-{topic}" for p in range(partitions)], workers)
    for part, threads in got["read"].items():
        assert index_of[next(iter(threads))] == expected[f"{part}-{topic}"]


def crossing_keys(got: dict[str, Any]) -> set[str]:
    """Keys read on one worker and keyed on another."""
    keyed_on = {k: thread for thread, keys in got["routed"].items() for k in keys}
    return {k for k, threads in got["read_keys"].items() if threads != {keyed_on[k]}}


@pytest.mark.parametrize(("workers_per_proc", "procs"), [(2, 1), (1, 2)], ids=str)
def test_keys_written_by_makerflow_are_read_where_their_keyed_step_runs(
    broker: Broker, unique: Callable[[str], str], workers_per_proc: int, procs: int
) -> None:
    ours, theirs = unique("aligned"), unique("murmur2")
    ensure_topics([broker.bootstrap], [ours, theirs], partitions=PARTITIONS)
    sender = Sender(producer([broker.bootstrap]))
    other = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for key in KEYS:
        sender.send(ours, key, b"x")
        other.produce(theirs, value=b"x", key=key.encode())
    sender.flush()
    assert other.flush(10) == 0

    aligned = run(broker.bootstrap, ours, workers_per_proc, procs)
    assert len(aligned["read"]) == PARTITIONS  # the keys still spread over every partition
    assert crossing_keys(aligned) == set()
    # The same keys placed by murmur2: some are read on one worker and keyed on another.
    assert crossing_keys(run(broker.bootstrap, theirs, workers_per_proc, procs))
