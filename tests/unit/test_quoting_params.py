"""The new quoting parameters refuse what would quietly do the wrong thing."""

from __future__ import annotations

import math

import pytest

from makerflow.operators.quoting_config import QuotingParams


def test_defaults_bound_the_inventory_at_ten_orders_and_inf_disables() -> None:
    p = QuotingParams()
    assert p.max_position is None and p.position_limit == pytest.approx(10 * p.order_size)
    assert p.replace({"order_size": 0.002}).position_limit == pytest.approx(0.02)
    assert p.replace({"max_position": 0.05}).position_limit == 0.05
    assert p.replace({"max_position": math.inf}).position_limit == math.inf


def test_a_zero_max_position_is_refused_rather_than_read_as_unlimited() -> None:
    # on main, 0 meant "no limit"; now a limit is on by default and inf turns it off
    with pytest.raises(ValueError, match="max_position"):
        QuotingParams(max_position=0.0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"refresh_fraction": 0.0}, "refresh_fraction"),
        ({"refresh_fraction": 1.01}, "refresh_fraction"),
        ({"size_skew": 1.5}, "size_skew"),
        ({"kappa_min": 5.0, "kappa_max": 1.0}, "kappa_min"),
        ({"arrival_rate": 0.0}, "arrival_rate"),
        ({"sigma_grid_s": 0.0}, "sigma_grid_s"),
        ({"maker_fee_bps": math.nan}, "maker_fee_bps"),
        ({"model": "avellaneda_stoikov", "rolling_horizon": False}, "session_end_ns"),
    ],
)
def test_bad_values_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        QuotingParams().replace(changes)


def test_a_finite_horizon_with_an_end_is_accepted() -> None:
    p = QuotingParams().replace(
        {"model": "avellaneda_stoikov", "rolling_horizon": False, "session_end_ns": 10**18}
    )
    assert p.session_end_ns == 10**18
