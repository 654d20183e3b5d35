"""The local exchange's public market: recorded Binance lines and the seeded random walk."""

from __future__ import annotations

import itertools
from decimal import Decimal as D

from makerflow.exchange.market_data import (
    BookTop,
    PublicTrade,
    RandomWalk,
    parse_recorded_line,
    replay_file,
)
from tests.conftest import FIXTURES

REPLAY = FIXTURES / "exchange" / "btcusdt_spot_top_trades_60s.gz"


def test_recorded_lines_parse_with_the_receive_time_as_event_time():
    top = parse_recorded_line(
        '1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,'
        '"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000",'
        '"A":"1.54698000"}}'
    )
    assert top == BookTop(
        1723161254087, "BTCUSDT", D("61837.63"), D("3.78826"), D("61837.64"), D("1.54698")
    )
    trade = parse_recorded_line(
        '1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,'
        '"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000",'
        '"T":1723161255342,"m":true,"M":true}}'
    )
    # "m": the buyer was the maker, so the taker sold.
    assert trade == PublicTrade(1723161254087, "BTCUSDT", D("61837.63"), D("0.02"), "SELL")
    assert parse_recorded_line('1 {"stream":"btcusdt@depth@100ms","data":{}}') is None


def test_replay_loops_with_a_rising_clock():
    once = list(replay_file(REPLAY))
    assert len(once) == 6743
    assert sum(isinstance(e, PublicTrade) for e in once) > 1000
    looped = list(itertools.islice(replay_file(REPLAY, loop=True), 2 * len(once) + 10))
    times = [e.time_ms for e in looped]
    assert times == sorted(times)
    assert looped[len(once)].time_ms > once[-1].time_ms
    assert looped[len(once)].symbol == once[0].symbol


def test_random_walk_is_seeded_and_on_the_grid():
    a = list(itertools.islice(RandomWalk(seed=3).events(), 500))
    b = list(itertools.islice(RandomWalk(seed=3).events(), 500))
    c = list(itertools.islice(RandomWalk(seed=4).events(), 500))
    assert a == b and a != c
    for ev in a:
        if isinstance(ev, BookTop):
            assert ev.bid < ev.ask and ev.bid % D("0.01") == 0
        else:
            assert ev.qty > 0 and ev.qty % D("0.00001") == 0
    assert {type(e) for e in a} == {BookTop, PublicTrade}
