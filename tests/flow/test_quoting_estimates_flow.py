"""The quoting operator exports its estimators' values as gauges (makerflow_quoting_sigma,
makerflow_quoting_intensity), and they are the pure quoter's."""

from __future__ import annotations

import logging
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY

from makerflow.operators.quoter import Quoter
from makerflow.operators.quoting import quoting_op
from makerflow.operators.quoting_config import QuotingConfig
from tests.quoting_support import load_market_ticks

TICKS = load_market_ticks()[:6000]  # about a minute, with its trades


def test_sigma_and_intensity_are_exported_per_market(caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="makerflow.operators.quoter")
    caplog.set_level(logging.ERROR, logger="makerflow.operators.quoter_orders")
    config = QuotingConfig()
    (market,) = config.markets
    flow = Dataflow("quoting_estimates")
    ticks = op.input("ticks", flow, TestingSource(TICKS))
    none: Any = op.filter("none", ticks, lambda _: False)
    out = quoting_op("quoting", ticks, none, none, none, none, none, config)
    sink: list[Any] = []
    op.output("intents", out.intents, TestingSink(sink))
    run_main(flow)

    pure = Quoter(market, config.params_for(market))
    for t in TICKS:
        pure.on_tick(t)
    labels = {"market": market.key}
    assert REGISTRY.get_sample_value("makerflow_quoting_sigma", labels) == pure.sigma
    assert 3.0 < pure.sigma < 7.0
    kappa = REGISTRY.get_sample_value("makerflow_quoting_intensity", {**labels, "param": "kappa"})
    a = REGISTRY.get_sample_value("makerflow_quoting_intensity", {**labels, "param": "a"})
    assert kappa is not None and a is not None
    fit = pure.liquidity
    assert fit is not None
    # the gauges follow the fit (refitted every 5 s of event time)
    assert abs(kappa - fit.kappa) < 0.3 * fit.kappa and abs(a - fit.a) < 0.3 * fit.a
    assert (kappa, a) != (config.defaults.kappa, config.defaults.arrival_rate)
