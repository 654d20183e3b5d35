"""The fault plan of the local exchange (pure): queued faults, the seeded chaos mix, counts."""

from __future__ import annotations

import pytest

from makerflow.exchange.faults import CHAOS_KINDS, EVENT_KINDS, Fault, FaultPlan

REPORT = {"e": "executionReport", "x": "NEW", "c": "a"}
TRADE = {"e": "executionReport", "x": "TRADE", "c": "a"}
BALANCE = {"e": "outboundAccountPosition"}


def test_queued_faults_match_method_path_and_exec_type_and_are_used_up():
    plan = FaultPlan()
    plan.add(Fault("rate_limit", count=2, method="POST", path="/api/v3/order"))
    plan.add(Fault("reorder_event", exec_type="TRADE"))
    assert plan.take("GET", "/api/v3/order") is None
    assert plan.take("POST", "/api/v3/order").kind == "rate_limit"
    assert plan.take_event(REPORT) is None
    assert plan.take_event(BALANCE) is None
    assert plan.take_event(TRADE).kind == "reorder_event"
    assert plan.take("POST", "/api/v3/order").kind == "rate_limit"
    assert plan.take("POST", "/api/v3/order") is None
    assert plan.pending() == 0
    assert dict(plan.injected_by_kind) == {"rate_limit": 2, "reorder_event": 1}
    assert plan.injected == 3


def test_after_is_counted_apart_and_bad_faults_are_refused():
    plan = FaultPlan()
    plan.add(Fault("server_error", after=True))
    plan.take("POST", "/api/v3/order")
    assert dict(plan.injected_by_kind) == {"server_error_after": 1}
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count >= 1"):
        Fault("late", count=0)
    with pytest.raises(ValueError, match="probability"):
        FaultPlan.chaos(1.5)
    with pytest.raises(ValueError, match="unknown chaos kinds"):
        FaultPlan.chaos(0.1, kinds=("meteor",))


def _run(plan, n=4000):
    kinds = []
    for i in range(n):
        if i % 2:
            f = plan.take("POST" if i % 4 == 1 else "DELETE", "/api/v3/order")
        else:
            f = plan.take_event(REPORT)
        kinds.append(f.label if f else None)
    return kinds


def test_chaos_is_seeded_steady_and_counted_per_kind():
    a, b, c = FaultPlan.chaos(0.1, seed=1), FaultPlan.chaos(0.1, seed=1), FaultPlan.chaos(0.1, 2)
    ka, kb, kc = _run(a), _run(b), _run(c)
    assert ka == kb and ka != kc
    struck = [k for k in ka if k]
    assert 300 <= len(struck) <= 500  # 10 % of 4000
    # Steady: each quarter of the run gets its share.
    quarters = [sum(1 for k in ka[q * 1000 : (q + 1) * 1000] if k) for q in range(4)]
    assert all(60 <= n <= 140 for n in quarters)
    assert set(struck) == set(CHAOS_KINDS)
    assert dict(a.injected_by_kind) == {k: struck.count(k) for k in set(struck)}
    # Event kinds strike events only; expire only places; nothing strikes reads.
    for i, k in enumerate(ka):
        if k is not None:
            assert (k in EVENT_KINDS) == (i % 2 == 0)
            assert k != "expire" or i % 4 == 1
    assert FaultPlan.chaos(1.0).take("GET", "/api/v3/order") is None
    assert FaultPlan.chaos(1.0).take_event(BALANCE) is None


def test_chaos_kinds_restrict_the_mix_and_parameters_reach_the_faults():
    plan = FaultPlan.chaos(1.0, seed=5, kinds=("late", "rate_limit"), client_timeout_s=3.0)
    seen = {}
    for _ in range(50):
        f = plan.take("POST", "/api/v3/order")
        seen[f.label] = f
    assert set(seen) == {"late", "rate_limit"}
    assert seen["late"].delay_s == 4.0
    assert seen["rate_limit"].enforce and seen["rate_limit"].retry_after_s == 1
    assert plan.take_event(REPORT) is None  # no event kinds chosen
    plan.clear()
    assert plan.take("POST", "/api/v3/order") is None
