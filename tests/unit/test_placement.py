"""Where Bytewax puts partitions and keys, and the partition that puts them together."""

from __future__ import annotations

from collections import Counter

import pytest

from makerflow.placement import aligned_partition, key_worker, partition_workers, siphash13

KEYS = [f"binance:C{i:03d}/USDT" for i in range(200)] + ["global", "account:main", "asset:BTC"]


def test_siphash13_is_pinned() -> None:
    # A regression pin of SipHash-1-3 with a zero key; that it is the hash Bytewax routes keys
    # by is what tests/integration/test_ops_partition_spread.py checks against the runtime.
    assert siphash13(b"") == 0xD1FBA762150C532C
    assert key_worker("binance:BTC/USDT", 2) == 1
    assert key_worker("binance:ETH/USDT", 2) == 0


def test_partitions_are_dealt_round_robin_in_name_order() -> None:
    names = [f"{p}-md.book" for p in range(12)]
    got = partition_workers(names, 4)
    assert [got[f"{p}-md.book"] for p in (0, 1, 10, 11, 2, 3)] == [0, 1, 2, 3, 0, 1]
    assert sorted(Counter(got.values()).values()) == [3, 3, 3, 3]


@pytest.mark.parametrize("partitions", [1, 2, 4, 8, 12, 16])
def test_an_aligned_key_is_read_on_the_worker_its_keyed_step_runs_on(partitions: int) -> None:
    names = {p: f"{p}-ticks" for p in range(partitions)}
    for workers in (w for w in (1, 2, 3, 4, 8) if partitions % w == 0):
        reader = partition_workers(names.values(), workers)
        for key in KEYS:
            part = aligned_partition(key.encode(), partitions)
            assert reader[names[part]] == key_worker(key, workers), (key, partitions, workers)


def test_aligned_partitions_spread_keys_over_every_partition() -> None:
    spread = Counter(aligned_partition(k.encode(), 4) for k in KEYS)
    assert sorted(spread) == [0, 1, 2, 3]
    assert min(spread.values()) > len(KEYS) / 8


def test_counts_below_one_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        key_worker("k", 0)
    with pytest.raises(ValueError, match="at least 1"):
        aligned_partition(b"k", 0)
