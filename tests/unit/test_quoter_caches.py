"""The quoter's per-tick shortcuts change nothing: the ladder memo (same inputs, same ladder)
and the quiet diff (a diff that changed nothing stays empty until a kept order's age or a
blocked slot's timer runs out) give the same intents and ladders, byte for byte, as a quoter
that recomputes everything on every event."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from makerflow.operators.quote_hygiene import Hygiene
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting_config import QuotingParams
from makerflow.schemas.codec import encode
from makerflow.schemas.events import Fill, OrderEvent, OrderIntent
from tests.quoting_support import btc_market, load_ticks

NS = 1_000_000_000
_TICKS = load_ticks(600)


def _replay(params: QuotingParams, *, recompute: bool, reject_every: int) -> list[bytes]:
    """The quoter over recorded ticks with a venue that acks places (rejects every
    ``reject_every``-th, so slots back off), confirms cancels and fills an order the touch
    moves through; every intent and ladder it published, encoded. ``recompute`` clears the
    shortcuts before every event."""
    market, _ = btc_market()
    q = Quoter(market, params, cancel_on_start=False)
    resting: dict[str, OrderIntent] = {}
    out: list[bytes] = []
    n = 0

    def event(ts: int, i: OrderIntent, status: str, filled: float = 0.0) -> OrderEvent:
        return OrderEvent(
            ts=ts,
            venue="binance",
            symbol="BTC/USDT",
            client_order_id=str(i.client_order_id),
            status=status,  # type: ignore[arg-type]
            side=i.side or "buy",
            price=i.price,
            qty=i.qty or 0.0,
            filled_qty=filled,
        )

    def take(ev: Any) -> list[Any]:
        if recompute:
            q._ladder_memo = None
            q._quiet_diff = None
        res = q.on_event(ev)
        if res.ladder is not None:
            out.append(encode(res.ladder))
        answers: list[Any] = []
        for i in res.intents:
            out.append(encode(i))
            cid = str(i.client_order_id)
            if i.action == "place":
                nonlocal n
                n += 1
                if n % reject_every == 0:
                    answers.append(event(ev.ts, i, "rejected"))
                else:
                    resting[cid] = i
                    answers.append(event(ev.ts, i, "ack"))
            elif i.action == "cancel" and cid in resting:
                answers.append(event(ev.ts, resting.pop(cid), "canceled"))
        return answers

    for t in _TICKS:
        pending = take(t)
        for cid, i in list(resting.items()):
            if (t.bid < (i.price or 0)) if i.side == "buy" else (t.ask > (i.price or 0)):
                del resting[cid]
                n += 1
                f = Fill(
                    ts=t.ts,
                    venue="binance",
                    symbol="BTC/USDT",
                    trade_id=str(n),
                    client_order_id=cid,
                    side=i.side or "buy",
                    price=i.price or 0.0,
                    qty=i.qty or 0.0,
                )
                pending += [f, event(t.ts, i, "filled", filled=i.qty or 0.0)]
        while pending:
            ev = pending.pop(0)
            pending += take(ev)
    return out


@settings(max_examples=12, deadline=None)
@given(
    levels=st.integers(1, 3),
    lifetime=st.sampled_from([0.0, 0.2, 1.0]),
    max_age=st.sampled_from([0.0, 0.5, 3.0]),
    refresh=st.sampled_from([0.1, 0.5, 1.0]),
    reject_every=st.integers(3, 9),
)
def test_shortcuts_give_the_same_intents_and_ladders_as_recomputing(
    levels: int, lifetime: float, max_age: float, refresh: float, reject_every: int
) -> None:
    params = btc_market(
        levels=levels,
        model="fixed_spread",
        half_spread_bps=0.3,
        min_quote_lifetime_s=lifetime,
        max_quote_age_s=max_age,
        refresh_fraction=refresh,
        reject_backoff_s=0.5,
    )[1]
    fast = _replay(params, recompute=False, reject_every=reject_every)
    slow = _replay(params, recompute=True, reject_every=reject_every)
    assert len(fast) > 10
    assert fast == slow


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    price=st.floats(99.0, 101.0),
    want=st.floats(99.0, 101.0),
    qty=st.sampled_from([0.001, 0.002]),
    want_qty=st.sampled_from([0.001, 0.002]),
    age=st.integers(0, 5 * NS),
    later=st.integers(0, 5 * NS),
    lifetime_s=st.sampled_from([0.0, 0.5, 2.0]),
    max_age_s=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_a_kept_order_is_kept_at_every_time_before_kept_until_and_not_at_it(
    side: str,
    price: float,
    want: float,
    qty: float,
    want_qty: float,
    age: int,
    later: int,
    lifetime_s: float,
    max_age_s: float,
) -> None:
    params = QuotingParams(
        min_quote_lifetime_s=lifetime_s, max_quote_age_s=max_age_s, refresh_fraction=0.5
    )
    rules = Hygiene.of(
        params, half_spread=0.5, reference=100.0, mid=100.0, tick_size=0.1, lot_size=0.001
    )
    placed, ts = 1_000 * NS, 1_000 * NS + age
    if not rules.keeps(side, price, qty, placed, want, want_qty, ts):  # type: ignore[arg-type]
        return
    until = rules.kept_until(price, qty, placed, want, want_qty)
    assert until > ts
    if until != float("inf"):  # the first time it lets go, to the nanosecond
        at = int(until)
        assert rules.keeps(side, price, qty, placed, want, want_qty, at - 1)  # type: ignore[arg-type]
        assert not rules.keeps(side, price, qty, placed, want, want_qty, at)  # type: ignore[arg-type]
    t2 = ts + later
    kept = rules.keeps(side, price, qty, placed, want, want_qty, t2)  # type: ignore[arg-type]
    assert kept == (t2 < until)
