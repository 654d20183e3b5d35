"""When nothing answers our orders (execution down, a silent venue), the quoter stops adding
orders after a bound instead of placing and cancelling forever (which also grew its order
state without bound: benchmarks/service_memory.py found +775 open orders per loop)."""

from __future__ import annotations

from makerflow.operators.quoting import Quoter
from tests.unit.test_quoter import MARKET, PARAMS, places, tick


def test_a_quoter_nobody_answers_stops_placing_at_the_unresolved_bound() -> None:
    params = PARAMS.replace({"min_quote_lifetime_s": 0.0, "max_unresolved_orders": 6})
    q = Quoter(MARKET, params)
    placed = 0
    for i in range(200):
        # the market walks away every tick, so each quote is refreshed (cancel + place)
        mid = 100.0 + 0.05 * i
        placed += len(places(q.on_tick(tick(i * 0.5, bid=mid - 0.01, ask=mid + 0.01))))
    assert placed <= 6
    assert len(q.order_state.open_orders(q.key)) <= 6


def test_the_default_bound_leaves_a_healthy_ladder_alone() -> None:
    assert PARAMS.unresolved_limit == 8 * PARAMS.levels
    q = Quoter(MARKET, PARAMS)
    assert len(places(q.on_tick(tick(0)))) == 2
