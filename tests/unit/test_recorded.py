"""The recorded-file source: formats, Binance's snapshot sync rule, naming, resume, pacing."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from pathlib import Path

import pytest

from makerflow.schemas.events import BookDelta, BookSnapshot, DeadLetter, Trade
from makerflow.sources.formats.binance import unified_symbol
from makerflow.sources.recorded import RecordedSource, discover, read_recorded
from tests.conftest import FIXTURES

MD = FIXTURES / "md"
SPOT = MD / "binance_spot_btcusdt_20240808_head6000.gz"
USDM = MD / "binance_usdm_btcusdt_20240808_head2500.gz"
COINM = MD / "binance_cm_btcusd_perp_20240808_head1500.gz"


def raw_lines(path: Path) -> list[tuple[int, dict]]:
    with gzip.open(path, "rb") as f:
        out = []
        for line in f:
            recv, body = line.split(b" ", 1)
            out.append((int(recv), json.loads(body)))
        return out


def test_spot_sync_rule_matches_binance_documentation() -> None:
    lines = raw_lines(SPOT)
    snap_at = next(i for i, (_, m) in enumerate(lines) if "lastUpdateId" in m)
    last_id = lines[snap_at][1]["lastUpdateId"]
    before = [m["data"] for _, m in lines[:snap_at] if m.get("stream", "").endswith("@depth@100ms")]
    assert before, "the fixture has diffs before its snapshot"
    stale = [d for d in before if d["u"] <= last_id]
    events = [e for e in read_recorded(SPOT) if not isinstance(e, Trade)]
    snap, first = events[0], events[1]
    assert isinstance(snap, BookSnapshot) and snap.seq == last_id
    assert isinstance(first, BookDelta)
    # The diff that straddles the snapshot (written before it) is the first one applied.
    assert first.first_seq <= last_id + 1 <= first.last_seq
    assert all(e.last_seq > last_id for e in events[1:])  # type: ignore[union-attr]
    n_diffs = sum(1 for _, m in lines if m.get("stream", "").endswith("@depth@100ms"))
    assert len(events) - 1 == n_diffs - len(stale)
    # Spot diffs chain U == previous u + 1 with no gaps in the real data.
    for a, b in itertools.pairwise(events[1:]):
        assert b.first_seq == a.last_seq + 1  # type: ignore[union-attr]


@pytest.mark.parametrize("path", [USDM, COINM])
def test_futures_sync_rule_and_prev_id_chain(path: Path) -> None:
    events = [e for e in read_recorded(path) if not isinstance(e, Trade)]
    snap = events[0]
    assert isinstance(snap, BookSnapshot)
    first = events[1]
    assert isinstance(first, BookDelta) and first.prev_seq is not None
    assert first.first_seq <= snap.seq <= first.last_seq or first.prev_seq == snap.seq
    for a, b in itertools.pairwise(events[1:]):
        assert b.prev_seq == a.last_seq  # type: ignore[union-attr]


def test_market_names_and_times() -> None:
    names = {m.name for m in discover([SPOT, USDM, COINM])}
    assert names == {"binance:BTC/USDT", "binanceusdm:BTC/USDT:USDT", "binancecoinm:BTC/USD:BTC"}
    lines = raw_lines(SPOT)
    trade_line = next((r, m["data"]) for r, m in lines if m.get("stream", "").endswith("@trade"))
    first_trade = next(e for e in read_recorded(SPOT) if isinstance(e, Trade))
    recv, data = trade_line
    assert first_trade.ts == data["T"] * 1_000_000
    assert first_trade.recv_ts == recv
    assert first_trade.trade_id == str(data["t"])
    assert first_trade.side == ("sell" if data["m"] else "buy")
    assert first_trade.price == float(data["p"]) and first_trade.qty == float(data["q"])
    assert unified_symbol("ETHUSD_PERP", "coinm") == "ETH/USD:ETH"
    assert unified_symbol("ETHUSDT", "usdm") == "ETH/USDT:USDT"


def test_venue_and_symbol_override() -> None:
    (m,) = discover(SPOT, venue="binance2", symbol="XBT/USDT")
    assert m.name == "binance2:XBT/USDT"
    ev = next(iter(read_recorded(SPOT, venue="binance2", symbol="XBT/USDT")))
    assert (ev.venue, ev.symbol) == ("binance2", "XBT/USDT")  # type: ignore[union-attr]


def test_garbage_lines_become_dead_letters_and_the_rest_still_reads(tmp_path: Path) -> None:
    with gzip.open(SPOT, "rb") as f:
        lines = f.readlines()[:300]
    bad = [
        b"not a line at all\n",
        b'1723161254000000000 {"stream":"btcusdt@trade","data":{"e":"trade"}}\n',
        b"1723161254000000000 {broken json\n",
        b'1723161254000000000 {"stream":"x","data":{"e":"mystery"}}\n',
    ]
    path = tmp_path / "spot" / "btcusdt_mixed.gz"
    path.parent.mkdir()
    with gzip.open(path, "wb") as f:
        f.writelines(lines[:50] + bad + lines[50:])
    events = list(read_recorded(path))
    dead = [e for e in events if isinstance(e, DeadLetter)]
    assert len(dead) == 4
    assert all(d.step == "recorded.binance" and d.reason and d.raw for d in dead)
    clean = [e for e in read_recorded(tmp_path / "spot" / "btcusdt_mixed.gz") if e not in dead]
    assert len(clean) == len(list(read_recorded_lines(lines)))


def read_recorded_lines(lines: list[bytes]):
    from makerflow.sources.formats.binance import BinanceRawParser

    p = BinanceRawParser("binance", "BTC/USDT", "spot")
    for line in lines:
        yield from p.feed(line)


def test_tardis_incremental_book_and_trades() -> None:
    book = list(read_recorded(MD / "tardis_deribit_incremental_book_L2_BTC-PERPETUAL.csv"))
    (snap,) = book
    assert isinstance(snap, BookSnapshot)
    assert (snap.venue, snap.symbol) == ("deribit", "BTC/USD:BTC")
    assert snap.ts == 1585699200245000 * 1000 and snap.recv_ts == 1585699200355684 * 1000
    assert snap.asks[0] == (6421.5, 18640.0) and len(snap.asks) == 15
    trades = list(read_recorded(MD / "tardis_binance-futures_trades_BTCUSDT_head400.csv"))
    assert len(trades) == 399 and all(isinstance(t, Trade) for t in trades)
    t0 = trades[0]
    assert isinstance(t0, Trade)
    assert (t0.venue, t0.symbol, t0.trade_id, t0.side) == (
        "binanceusdm",
        "BTC/USDT:USDT",
        "42377944",
        "buy",
    )


def test_tardis_rows_sharing_a_timestamp_form_one_update(tmp_path: Path) -> None:
    p = tmp_path / "deribit_incremental_book_L2_X.csv"
    p.write_text(
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
        "deribit,BTC-PERPETUAL,1000,1100,true,bid,99,1\n"
        "deribit,BTC-PERPETUAL,1000,1100,true,ask,101,1\n"
        "deribit,BTC-PERPETUAL,2000,2100,false,bid,100,2\n"
        "deribit,BTC-PERPETUAL,2000,2100,false,ask,101,0\n"
        "deribit,BTC-PERPETUAL,3000,3100,false,ask,102,5\n"
        "deribit,BTC-PERPETUAL,3000,3100,false,ask,oops,5\n"
    )
    events = list(read_recorded(p))
    kinds = [type(e).__name__ for e in events]
    # A row is grouped until the next timestamp shows its update is complete.
    assert kinds == ["BookSnapshot", "BookDelta", "DeadLetter", "BookDelta"]
    d1, d2 = events[1], events[3]
    assert isinstance(d1, BookDelta) and isinstance(d2, BookDelta)
    assert (d1.first_seq, d1.bids, d1.asks) == (2, ((100.0, 2.0),), ((101.0, 0.0),))
    assert (d2.first_seq, d2.asks) == (3, ((102.0, 5.0),))


def drain(part, limit: int | None = None) -> list:
    out: list = []
    while limit is None or len(out) < limit:
        try:
            out.extend(part.next_batch())
        except StopIteration:
            break
    return out


def test_resume_from_a_snapshot_gives_the_same_events() -> None:
    src = RecordedSource([SPOT, USDM], batch_size=97)
    key = "binanceusdm:BTC/USDT:USDT"
    assert src.list_parts() == ["binance:BTC/USDT", key]
    whole = drain(src.build_part("s", key, None))
    part = src.build_part("s", key, None)
    head = drain(part, limit=300)
    state = part.snapshot()
    part.close()
    rest = drain(src.build_part("s", key, state))
    assert head + rest == whole
    assert len(whole) > len(head) > 0


def test_speed_paces_by_recorded_receive_time() -> None:
    src = RecordedSource(SPOT, speed=1.0, batch_size=10_000)
    part = src.build_part("s", "binance:BTC/USDT", None)
    first = list(part.next_batch())
    awake = part.next_awake()
    assert first, "the first events are due at once"
    assert awake is not None and awake.timestamp() > time.time()
    span = (first[-1].recv_ts - first[0].recv_ts) / 1e9
    assert span < 1.0  # only about the first moment of recorded time came out
    part.close()
    with pytest.raises(ValueError, match="speed"):
        RecordedSource(SPOT, speed=0)


def test_bybit_archive_snapshot_then_deltas() -> None:
    path = MD / "bybit_xrpusdt-ob500.data.zip"
    (market,) = discover(path)
    assert (market.venue, market.symbol, market.fmt) == ("bybit", "XRP/USDT:USDT", "bybit")
    events = list(read_recorded(path))
    assert isinstance(events[0], BookSnapshot) and len(events[0].bids) == 500
    assert events[0].ts == 1733011200691 * 1_000_000
    deltas = events[1:]
    assert len(deltas) == 49 and all(isinstance(d, BookDelta) for d in deltas)
    for a, b in itertools.pairwise(events):
        prev = a.seq if isinstance(a, BookSnapshot) else a.last_seq  # type: ignore[union-attr]
        assert b.first_seq == prev + 1  # type: ignore[union-attr]
