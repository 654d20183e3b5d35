"""``makerflow topics create --partitions N``: creates what is missing with N partitions,
reports what exists with its partition count, and says so when that is not N."""

from __future__ import annotations

import pytest

from makerflow.broker import Broker
from makerflow.cli import main
from makerflow.kafka_admin import list_topics
from makerflow.schemas.topics import TOPICS

pytestmark = pytest.mark.slow


def test_create_with_partitions_then_check_what_exists(tmp_path, capsys) -> None:
    with Broker(log_path=tmp_path / "tansu.log") as b:
        rc = main(["topics", "create", "md.book", "md.trades", "--partitions", "4",
                   "--brokers", b.bootstrap])  # fmt: skip
        out = capsys.readouterr().out
        assert rc == 0
        assert "md.book: created (4 partitions)" in out
        assert list_topics([b.bootstrap])["md.trades"] == 4

        # Everything else gets created; the two that exist are reported, not changed.
        rc = main(["topics", "create", "--brokers", b.bootstrap])
        out = capsys.readouterr().out
        assert rc == 0
        assert "md.book: exists (4 partitions)" in out
        assert "ticks: created (1 partitions)" in out
        assert set(TOPICS) <= set(list_topics([b.bootstrap]))

        rc = main(["topics", "create", "md.book", "--partitions", "2", "--brokers", b.bootstrap])
        captured = capsys.readouterr()
        assert rc == 1
        assert "md.book has 4 partitions, not the 2 asked for" in captured.err
        assert list_topics([b.bootstrap])["md.book"] == 4
