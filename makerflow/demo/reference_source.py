"""The reference venues' recordings as a Bytewax source paced to the demo's clock.

:class:`~makerflow.sources.recorded.RecordedSource` paces a replay from the moment its first
event is read; the demo needs every recording paced from one moment (the traded market's
start on the local exchange), or a crash would reach the futures seconds after the spot
market and the index would judge venues by when they were read rather than by the market.
"""

from __future__ import annotations

from makerflow.schemas.events import DeadLetter
from makerflow.sources.formats import MarketData
from makerflow.sources.recorded import (
    PartState,
    RecordedSource,
    _RecordedPartition,
    event_time,
)


class _AlignedPartition(_RecordedPartition):
    offset_ns = 0

    def _due(self, ev: MarketData | DeadLetter) -> float | None:
        # Due when the wall clock reaches the event's receive time moved to the present.
        return (event_time(ev) + self.offset_ns) / 1e9


class AlignedRecordedSource(RecordedSource):
    """Recorded markets replayed in real time, each event due at its receive time plus
    ``offset_ns`` (wall clock, ns since the epoch)."""

    def __init__(self, paths: list[str], offset_ns: int) -> None:
        super().__init__(paths, speed=1.0)
        self.offset_ns = offset_ns

    def build_part(
        self, step_id: str, for_part: str, resume_state: PartState | None
    ) -> _RecordedPartition:
        part = _AlignedPartition(self.markets[for_part], resume_state, 1.0, self.batch_size)
        part.offset_ns = self.offset_ns
        return part
