"""At-least-once input: duplicated and reordered fills, ticks and intents give the same report."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makerflow.reports import compute
from tests.report_support import FILLS, INTENTS, LADDERS, TICKS, fill, frame, tick

# A longer run than the hand-made one: more fills and ticks to shuffle.
MORE_TICKS = [*TICKS, *(tick(4 + i, 99 + (i % 5) * 0.5) for i in range(12))]
MORE_FILLS = [
    *FILLS,
    *(
        fill(
            4.2 + i,
            "sell" if i % 3 == 0 else "buy",
            0.5 + i % 2,
            99 + (i % 4) / 2,
            0.01,
            f"x{i}",
            f"d{i}",
        )
        for i in range(8)
    ),
]
BASELINE = compute(
    {
        "ticks": frame(MORE_TICKS),
        "fills": frame(MORE_FILLS),
        "intents": frame(INTENTS),
        "ladders": frame(LADDERS),
    }
)


def delivered(events: list) -> st.SearchStrategy[list]:
    """Every event at least once, some twice or three times, in any order."""
    return st.lists(st.integers(0, 2), min_size=len(events), max_size=len(events)).flatmap(
        lambda extra: st.permutations(
            [e for e, n in zip(events, extra, strict=True) for _ in range(1 + n)]
        )
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ticks=delivered(MORE_TICKS),
    fills=delivered(MORE_FILLS),
    intents=delivered(INTENTS),
    ladders=delivered(LADDERS),
)
def test_report_is_the_same_for_any_delivery(ticks, fills, intents, ladders):
    again = compute(
        {
            "ticks": frame(ticks),
            "fills": frame(fills),
            "intents": frame(intents),
            "ladders": frame(ladders),
        }
    )
    assert again.summary.equals(BASELINE.summary)
    assert again.pnl.equals(BASELINE.pnl)
    assert again.markouts.equals(BASELINE.markouts)
    assert again.markout_curve.equals(BASELINE.markout_curve)
    assert again.orders.equals(BASELINE.orders)
    assert again.quotes.equals(BASELINE.quotes)
