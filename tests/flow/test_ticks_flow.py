"""The ticks operator and flows: same outputs on run_main and cluster_main with 1 and 2
workers, injected feed faults, recovery, and the Kafka service end to end."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.flows.ticks import TicksTopics, build_file_flow, build_flow
from makerflow.kafka_admin import ensure_topics, read_topic
from makerflow.operators.market_ticks import MarketTicks
from makerflow.operators.ticks import TicksConfig, ticks_op
from makerflow.schemas import topics as reg
from makerflow.schemas.codec import encode
from makerflow.schemas.events import (
    Bar,
    BookDelta,
    BookSnapshot,
    DataQuality,
    DeadLetter,
    Tick,
    Trade,
)
from makerflow.sinks.jsonl import read_jsonl
from makerflow.sources.recorded import read_recorded
from tests.conftest import FIXTURES

MD = FIXTURES / "md"
FILES = [
    MD / "binance_spot_btcusdt_20240808_head6000.gz",
    MD / "binance_usdm_btcusdt_20240808_head2500.gz",
    MD / "binance_cm_btcusd_perp_20240808_head1500.gz",
]
CONFIG = TicksConfig(bar_lengths_ms=(1_000, 60_000))


def pure(events: list[Any], config: TicksConfig = CONFIG) -> dict[str, list[Any]]:
    """What the operator must emit per market: MarketTicks run by hand, then flushed."""
    markets: dict[str, MarketTicks] = {}
    out: dict[str, list[Any]] = defaultdict(list)
    for ev in events:
        key = f"{ev.venue}:{ev.symbol}"
        m = markets.setdefault(key, MarketTicks(ev.venue, ev.symbol, config))
        out[key].extend(m.on_event(ev))
    for key, m in markets.items():
        out[key].extend(m.flush())
    return out


def by_market(items: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for x in items:
        out[x.key.decode() if isinstance(x, DeadLetter) else x.key].append(x)
    return out


def only(groups: dict[str, list[Any]], kind: type) -> dict[str, list[Any]]:
    return {k: [x for x in v if isinstance(x, kind)] for k, v in groups.items()}


def test_file_flow_equals_pure_logic_on_every_runner(
    run_flow: Callable[[Dataflow], None], tmp_path: Path
) -> None:
    paths = {n: tmp_path / f"{n}.jsonl" for n in ("ticks", "bars", "quality", "dead")}
    flow = build_file_flow(
        FILES,
        paths["ticks"],
        bars_path=paths["bars"],
        quality_path=paths["quality"],
        dead_letters_path=paths["dead"],
        config=CONFIG,
    )
    run_flow(flow)
    expected = pure([e for e in read_recorded(FILES) if not isinstance(e, DeadLetter)])
    ticks = by_market(read_jsonl(paths["ticks"], Tick))
    bars = by_market(read_jsonl(paths["bars"], Bar))
    assert set(ticks) == {
        "binance:BTC/USDT",
        "binanceusdm:BTC/USDT:USDT",
        "binancecoinm:BTC/USD:BTC",
    }
    assert ticks == only(expected, Tick)
    assert bars == {k: v for k, v in only(expected, Bar).items() if v}
    assert sum(len(v) for v in bars.values()) > 10
    assert not paths["quality"].exists() or read_jsonl(paths["quality"], DataQuality) == []


def faulty_feed() -> tuple[list[Any], dict[str, int]]:
    """Real spot events with faults injected, and where some of them sit."""
    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)]
    book = [i for i, e in enumerate(events) if isinstance(e, BookDelta)]
    first_trade = next(i for i, e in enumerate(events) if isinstance(e, Trade))
    dup_at, swap_at, gap_at = book[20], book[40], book[60]
    cross_at, silent_at = book[100], book[200]
    resync_at = {book[80], book[140]}
    out: list[Any] = []
    marks: dict[str, int] = {}
    i = 0
    while i < len(events):
        ev = events[i]
        if i == first_trade:
            bad = msgspec.structs.replace(ev, price=float("nan"), trade_id="bad")
            out += [ev, bad]  # a trade no venue could print
        elif i == dup_at:
            out += [ev, ev]  # a duplicate
        elif i == swap_at:
            out += [events[i + 1], ev]  # two deltas out of order
            i += 1
        elif i == gap_at:
            pass  # a lost delta
        elif i in resync_at:
            # A fresh snapshot of the true book, as a recorder sends one periodically.
            out += [truth_snapshot(events[:i]), ev]
        elif i == cross_at:
            out.append(msgspec.structs.replace(ev, bids=((10.0**6, 1.0), *ev.bids)))
        elif i == silent_at:
            # The venue goes quiet for 30 s of event time (later events shift by 30 s).
            shift = 30_000_000_000
            marks["silent_ts"] = ev.ts + shift
            out += [msgspec.structs.replace(e, ts=e.ts + shift) for e in events[i:]]
            break
        else:
            out.append(ev)
        i += 1
    return out, marks


def truth_snapshot(prefix: list[Any]) -> BookSnapshot:
    from tests.unit.test_book import ReferenceBook

    ref = ReferenceBook()
    seq = 0
    last = prefix[0]
    for ev in prefix:
        if isinstance(ev, BookSnapshot | BookDelta):
            ref.apply(ev)
            seq = ev.seq if isinstance(ev, BookSnapshot) else ev.last_seq
            last = ev
    return BookSnapshot(
        ts=last.ts,
        venue=last.venue,
        symbol=last.symbol,
        seq=seq,
        bids=tuple(sorted(ref.bids.items(), reverse=True)),
        asks=tuple(sorted(ref.asks.items())),
    )


def test_injected_faults_are_detected_reported_counted_and_recovered(
    run_flow: Callable[[Dataflow], None],
) -> None:
    events, marks = faulty_feed()
    flow = Dataflow("ticks_faults")
    src = op.input("in", flow, TestingSource(events, batch_size=64))
    config = TicksConfig(silent_after_ms=10_000)
    out = ticks_op("ticks", src, None, config)
    got: dict[str, list[Any]] = {"ticks": [], "quality": [], "dead": []}
    op.output("t", out.ticks, TestingSink(got["ticks"]))
    op.output("q", out.quality, TestingSink(got["quality"]))
    op.output("d", out.dead_letters, TestingSink(got["dead"]))
    run_flow(flow)

    kinds = [q.kind for q in got["quality"]]
    assert kinds == ["duplicate", "out_of_order", "gap", "resync", "crossed", "resync", "silent"]
    assert [q.ts for q in got["quality"] if q.kind == "silent"] == [marks["silent_ts"]]
    (dead,) = got["dead"]
    assert dead.step == "ticks" and b'"bad"' in dead.raw
    # Ticks carry on after each recovery, up to the end of the feed.
    assert max(t.ts for t in got["ticks"]) >= events[-1].ts - 2_000_000_000
    # The book was right after each recovery: every tick matches the true book then.
    assert got["ticks"] == only(pure(events, config), Tick)["binance:BTC/USDT"]
    assert_ticks_follow_the_true_book(got["ticks"])


def assert_ticks_follow_the_true_book(ticks: list[Tick]) -> None:
    """Every book tick equals the reference book built from the clean recording."""
    from tests.unit.test_book import ReferenceBook

    ref = ReferenceBook()
    tops: dict[int, set[tuple[float, float, float, float]]] = defaultdict(set)
    for ev in read_recorded(FILES[0]):
        if isinstance(ev, BookSnapshot | BookDelta):
            ref.apply(ev)
            tops[ev.ts].add(ref.top())
    book_ticks = [t for t in ticks if t.reason == "book"]
    checked = 0
    for t in book_ticks:
        if t.ts in tops:  # events after the silence are shifted in time; skip those
            assert (t.bid, t.bid_qty, t.ask, t.ask_qty) in tops[t.ts]
            checked += 1
    assert checked > 100


ALIGNED = TicksConfig(bar_lengths_ms=(1_000, 60_000), align_ms=3_600_000)


def test_two_streams_aligned_give_event_time_ticks_on_every_runner(
    run_flow: Callable[[Dataflow], None],
) -> None:
    from tests.unit.test_ticks_align import event_time_order

    events = [e for e in read_recorded(FILES[:2]) if not isinstance(e, DeadLetter)]
    book = [e for e in events if not isinstance(e, Trade)]
    trades = [e for e in events if isinstance(e, Trade)]
    flow = Dataflow("ticks_two_streams")
    # Batches of different sizes: the two inputs drift apart as they are read.
    b = op.input("book", flow, TestingSource(book, batch_size=7))
    t = op.input("trades", flow, TestingSource(trades, batch_size=101))
    out = ticks_op("ticks", b, t, ALIGNED)
    got: list[Any] = []
    op.output("t", out.ticks, TestingSink(got))
    run_flow(flow)
    expected: dict[str, list[Any]] = {}
    for key in {e.key for e in events}:
        kb = [e for e in book if e.key == key]
        kt = [e for e in trades if e.key == key]
        expected[key] = only(pure(event_time_order(kb, kt), ALIGNED), Tick)[key]
    assert by_market(got) == expected


def test_resume_after_a_crash_gives_the_same_ticks(tmp_path: Path) -> None:
    # A zero epoch interval commits recovery state after every event (~15 ms each here):
    # keep the run short.
    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)][:300]
    crash = len(events) // 2
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    # One ABORT object for both runs: it fires once, the resumed run goes past it.
    with_abort = [*events[:crash], TestingSource.ABORT(), *events[crash:]]
    runs: list[list[Tick]] = []
    for _ in range(2):
        flow = Dataflow("ticks_resume")
        src = op.input("in", flow, TestingSource(with_abort))
        out = ticks_op("ticks", src, None, CONFIG)
        res: list[Tick] = []
        op.output("t", out.ticks, TestingSink(res))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
        runs.append(res)
    first, second = runs
    assert first and second
    assert max(t.ts for t in first) <= events[crash].ts
    assert min(t.ts for t in second) >= events[crash - 5].ts  # resumed, not restarted
    merged = list(dict.fromkeys(encode(t) for t in first + second))
    assert merged == [encode(t) for t in only(pure(events), Tick)["binance:BTC/USDT"]]


@pytest.mark.slow
def test_ticks_service_on_kafka(broker: Any, unique: Callable[[str], str]) -> None:
    from makerflow.commands.replay import build_replay_flow

    names = {n: unique(n) for n in ("md.book", "md.trades", "ticks", "bars", "md.quality")}
    topics = TicksTopics(
        book=reg.Topic(names["md.book"], "market", reg.MD_BOOK.value_type),
        trades=reg.Topic(names["md.trades"], "market", reg.MD_TRADES.value_type),
        ticks=reg.Topic(names["ticks"], "market", Tick),
        bars=reg.Topic(names["bars"], "market", Bar),
        quality=reg.Topic(names["md.quality"], "market", DataQuality),
    )
    brokers = (broker.bootstrap,)
    ensure_topics(brokers, [*names.values(), reg.DEAD_LETTERS.name])
    files = FILES[1:]  # USDT-M and COIN-M: two markets, small
    run_main(
        build_replay_flow(
            files, list(brokers), book_topic=names["md.book"], trades_topic=names["md.trades"]
        )
    )
    from makerflow.flows.common import FlowSettings

    settings = FlowSettings(brokers=brokers, tail=False)
    run_main(build_flow(settings, ALIGNED, topics, "ticks_kafka"))

    from tests.unit.test_ticks_align import event_time_order

    events = [e for e in read_recorded(files) if not isinstance(e, DeadLetter)]
    expected: dict[str, list[Any]] = {}
    for key in {e.key for e in events}:
        kb = [e for e in events if e.key == key and not isinstance(e, Trade)]
        kt = [e for e in events if e.key == key and isinstance(e, Trade)]
        expected[key] = [
            encode(x) for x in only(pure(event_time_order(kb, kt), ALIGNED), Tick)[key]
        ]
    n = sum(len(v) for v in expected.values())
    msgs = read_topic(brokers, names["ticks"], expected=n, timeout=60)
    got: dict[str, list[bytes]] = defaultdict(list)
    for m in msgs:
        got[m.key().decode()].append(m.value())
    # Aligned in event time, two topics consumed at their own pace give exactly the ticks
    # of one stream merged by time: a replay is the same on every run.
    assert got == expected
    bars = read_topic(brokers, names["bars"], idle=1.0, timeout=30)
    assert bars and {m.key() for m in bars} <= {k.encode() for k in expected}


def test_ticks_command_writes_one_tick_per_line(tmp_path: Path, capsys: Any) -> None:
    from makerflow.cli import main

    out = tmp_path / "ticks.jsonl"
    assert main(["ticks", "--input", str(FILES[0]), "--output", str(out)]) == 0
    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)]
    expected = only(pure(events, TicksConfig()), Tick)["binance:BTC/USDT"]
    assert out.read_bytes() == b"".join(encode(t) + b"\n" for t in expected)
    assert read_jsonl(tmp_path / "ticks.bars.jsonl", Bar)
    assert (tmp_path / "ticks.deadletter.jsonl").read_bytes() == b""
    assert f"ticks: {len(expected)} lines" in capsys.readouterr().out


def test_jsonl_output_after_a_crash_and_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    from makerflow.sinks.jsonl import jsonl_output

    events = [e for e in read_recorded(FILES[0]) if not isinstance(e, DeadLetter)][:300]
    with_abort = [*events[:150], TestingSource.ABORT(), *events[150:]]
    (tmp_path / "db").mkdir()
    init_db_dir(tmp_path / "db", 1)
    recovery = RecoveryConfig(str(tmp_path / "db"))
    out = tmp_path / "ticks.jsonl"
    sizes = []
    for _ in range(2):
        flow = Dataflow("ticks_jsonl_resume")
        src = op.input("in", flow, TestingSource(with_abort))
        jsonl_output("out", ticks_op("ticks", src, None, CONFIG).ticks, out)
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
        sizes.append(out.stat().st_size)
    assert 0 < sizes[0] < sizes[1]
    expected = only(pure(events), Tick)["binance:BTC/USDT"]
    # The resumed run cut the file back to its last snapshot: no line twice, none missing.
    assert out.read_bytes() == b"".join(encode(t) + b"\n" for t in expected)
