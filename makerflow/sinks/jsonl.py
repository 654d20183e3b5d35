"""A JSONL file sink: one event per line, in the event's JSON encoding (the Kafka value).

It is a one-partition :class:`FixedPartitionedSink`, so on any number of workers every item
goes to the one worker that owns the file and the file never interleaves two writers. Its
resume state is the file length at the last snapshot: on resume the file is cut back to it,
so a recovered run never leaves lines from an epoch that was replayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from makerflow import metrics
from makerflow.schemas.codec import encode

_PART = "jsonl"


class _JsonlPartition(StatefulSinkPartition[Any, int]):
    def __init__(self, path: Path, resume: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO
        if resume is None:
            self._f = path.open("wb")
        else:
            self._f = path.open("r+b") if path.exists() else path.open("wb")
            self._f.truncate(resume)
            self._f.seek(resume)
        self._out = metrics.EVENTS_OUT.labels(step=f"jsonl:{path.name}")

    def write_batch(self, values: list[Any]) -> None:
        if not values:
            return
        self._f.write(b"".join(_line(v) for v in values))
        self._out.inc(len(values))

    def snapshot(self) -> int:
        self._f.flush()
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


def _line(value: Any) -> bytes:
    if isinstance(value, msgspec.Struct):
        return encode(value) + b"\n"
    return msgspec.json.encode(value) + b"\n"


class JsonlSink(FixedPartitionedSink[Any, int]):
    """Writes every value of a keyed stream to ``path``, one JSON document per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def list_parts(self) -> list[str]:
        return [_PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _JsonlPartition:
        return _JsonlPartition(self.path, resume_state)


@operator
def jsonl_output(step_id: str, up: Stream[Any], path: str | Path) -> None:
    """Write the events of ``up`` to the JSONL file ``path`` (replaced at the start of a run,
    cut back to the last snapshot on resume)."""
    keyed = op.key_on("key", up, lambda _: _PART)
    op.output("write", keyed, JsonlSink(path))


def read_jsonl(path: str | Path, value_type: Any) -> list[Any]:
    """Every line of a JSONL file decoded as ``value_type`` (tests and tools)."""
    decoder = msgspec.json.Decoder(value_type)
    with Path(path).open("rb") as f:
        return [decoder.decode(line) for line in f if line.strip()]
