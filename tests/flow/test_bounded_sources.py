"""An embedded run ends by itself: live sources stop once the finite inputs are done."""

from __future__ import annotations

import time
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import SimplePollingSource
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.sources.bounded import RunLatch, bounded


class _Heartbeat(SimplePollingSource[str, None]):
    """A live source that never ends on its own."""

    def next_item(self) -> str:
        return "beat"


def test_live_source_stops_after_finite_input_and_grace() -> None:
    latch = RunLatch(grace_s=0.3, max_runtime_s=30)
    flow = Dataflow("bounded")
    finite = op.input("md", flow, bounded(TestingSource(range(100)), latch, finite=True))
    live = op.input(
        "live", flow, bounded(_Heartbeat(timedelta(milliseconds=50)), latch, finite=False)
    )
    md_out: list[int] = []
    live_out: list[str] = []
    op.output("md_out", finite, TestingSink(md_out))
    op.output("live_out", live, TestingSink(live_out))
    start = time.monotonic()
    run_main(flow)
    elapsed = time.monotonic() - start
    assert md_out == list(range(100))
    # The live source kept running through the grace period, then ended the flow.
    assert live_out and set(live_out) == {"beat"}
    assert latch.should_stop()
    assert elapsed < 20


def test_max_runtime_stops_a_run_without_finite_inputs() -> None:
    latch = RunLatch(max_runtime_s=0.5)
    flow = Dataflow("deadline")
    live = op.input(
        "live", flow, bounded(_Heartbeat(timedelta(milliseconds=50)), latch, finite=False)
    )
    out: list[str] = []
    op.output("out", live, TestingSink(out))
    run_main(flow)
    assert out
