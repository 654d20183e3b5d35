"""What the quoter makes of its parameters: its share of a ``set_params`` command, and the
model, trade-intensity fit and ladder shape that a :class:`QuotingParams` configures."""

from __future__ import annotations

from typing import Any

from makerflow.operators.intensity import TradeIntensity
from makerflow.operators.ladder import LadderShape
from makerflow.operators.quoting_config import QuotingParams
from makerflow.operators.quoting_models import (
    AvellanedaStoikov,
    FixedSpread,
    Glft,
    QuotingModel,
)

PARAM_PREFIX = "quoting."
_PARAM_FIELDS = frozenset(QuotingParams.__struct_fields__)


def quoting_changes(params: dict[str, Any]) -> dict[str, Any]:
    """The quoter's share of a ``set_params`` command on the control topic, which the risk
    service reads too.

    ``quoting.<field>`` is always the quoter's (an unknown field is an error); another
    ``<service>.<name>`` is not; a bare ``<field>`` is the quoter's when it names one of its
    parameters. A command with no key of the quoter's is another service's and gives ``{}``;
    one that mixes the quoter's keys with unknown bare keys is refused whole (a typo must not
    half-apply).
    """
    mine: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in params.items():
        if key.startswith(PARAM_PREFIX):
            mine[key.removeprefix(PARAM_PREFIX)] = value
        elif "." in key:
            continue
        elif key in _PARAM_FIELDS:
            mine[key] = value
        else:
            unknown.append(key)
    if mine and unknown:
        mine.update({k: params[k] for k in unknown})  # replace() names them in its error
    return mine


def quoting_model(params: QuotingParams) -> QuotingModel:
    if params.model == "glft":
        return Glft(
            gamma=params.gamma,
            a=params.arrival_rate,
            kappa=params.kappa,
            order_size=params.order_size,
        )
    if params.model == "avellaneda_stoikov":
        return AvellanedaStoikov(
            gamma=params.gamma,
            kappa=params.kappa,
            horizon_s=params.horizon_s,
            rolling=params.rolling_horizon,
            order_size=params.order_size,
            session_end_ns=params.session_end_ns,
        )
    return FixedSpread(
        half_spread_bps=params.half_spread_bps, skew_bps_per_unit=params.skew_bps_per_unit
    )


_INTENSITY_BINS = 40
_INTENSITY_SPAN = 4.0
"""The distance bins of the intensity fit span this many mean depths (1/kappa) of the
configured kappa: a market's price scale without another parameter."""


def trade_intensity(params: QuotingParams) -> TradeIntensity:
    return TradeIntensity(
        _INTENSITY_SPAN / (params.kappa * _INTENSITY_BINS),
        bins=_INTENSITY_BINS,
        window_s=params.intensity_window_s,
        slice_s=min(10.0, params.intensity_window_s),
        min_trades=params.intensity_min_trades,
        kappa_min=params.kappa_min,
        kappa_max=params.kappa_max,
    )


def intensity_key(params: QuotingParams) -> tuple[float, ...]:
    return (
        params.kappa,
        params.intensity_window_s,
        params.intensity_min_trades,
        params.kappa_min,
        params.kappa_max,
    )


def ladder_shape(params: QuotingParams) -> LadderShape:
    return LadderShape(
        levels=params.levels,
        level_spacing_bps=params.level_spacing_bps,
        order_size=params.order_size,
        size_multiplier=params.size_multiplier,
        min_spread_bps=params.min_spread_bps,
        max_spread_bps=params.max_spread_bps,
        price_band_bps=params.price_band_bps,
    )
