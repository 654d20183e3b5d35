"""The in-process channel carries a sink's items back into the same flow, in order."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.sources.bounded import RunLatch, bounded
from makerflow.sources.loopback import Loopback


def test_items_written_downstream_come_back_upstream() -> None:
    latch = RunLatch(grace_s=0.5, max_runtime_s=30)
    channel: Loopback[int] = Loopback()
    flow = Dataflow("loop")
    first = op.input("first", flow, bounded(TestingSource(range(50)), latch, finite=True))
    back = op.input("back", flow, bounded(channel.source(), latch, finite=False))
    # Downstream of the input, squares go into the channel; they reappear at "back".
    op.output("to_channel", op.map("square", first, lambda x: x * x), channel.sink())
    got: list[int] = []
    op.output("out", back, TestingSink(got))
    run_main(flow)
    assert got == [x * x for x in range(50)]
