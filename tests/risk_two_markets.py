"""Two markets in one account for the risk determinism tests: BTC/USDT from the recorded
ticks, SOL/USDT made from the same ticks at a fifteenth of the price, each falling 10 % at
its own moment and bought now and then, so the account's and global PnL sum the two. Also
the risk config over them and the bounded ``risk_op`` under ``run_main``, its inputs ended
by the topics' :class:`InputEnded` markers.

Shared by ``tests/flow/test_risk_stage_ends.py`` (the stages' end markers, arrival order)
and ``tests/integration/test_merge_determinism.py`` (the same through Kafka, compared with
:func:`run`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.operators.risk import risk_op
from makerflow.operators.risk_limits import MarketConfig, MarketLimits, PortfolioLimits, RiskConfig
from makerflow.schemas import events as ev
from makerflow.schemas import topics as t
from makerflow.schemas.markers import InputEnded
from tests.risk_support import recorded_ticks, with_jump

TOPICS = {
    t.TICKS.name: ev.Tick,
    t.INDEX.name: ev.IndexPrice,
    t.FILLS.name: ev.Fill,
    t.ORDER_EVENTS.name: ev.OrderEvent,
    t.BALANCES.name: ev.BalanceSnapshot,
    t.CONTROL.name: ev.ControlCommand,
    t.MD_QUALITY.name: ev.DataQuality,
}
"""The risk flow's input topics and what each carries."""


def end_markers(*, but: tuple[str, ...] = ()) -> list[InputEnded]:
    """Every input topic's end marker (one partition each), but those named in ``but``."""
    return [InputEnded(name, 0, 1) for name in TOPICS if name not in but]


class TwoMarkets(NamedTuple):
    btc: list[ev.Tick]
    sol: list[ev.Tick]
    fills: list[ev.Fill]

    def in_time(self) -> list[Any]:
        """Every event in event time."""
        return sorted([*self.btc, *self.sol, *self.fills], key=lambda e: e.ts)


def two_markets(
    n: int,
    *,
    btc_jump_at: int,
    sol_jump_at: int,
    sol_shift_ns: int,
    sol_every: int = 1,
    btc_buys: tuple[float, int],
    sol_buys: tuple[float, int],
) -> TwoMarkets:
    """The first ``n`` recorded ticks as BTC/USDT falling 10 % at tick ``btc_jump_at``;
    SOL/USDT from every ``sol_every``-th of the same ticks (falling at ``sol_jump_at``),
    ``sol_shift_ns`` later. ``*_buys``: (quantity, every how many of the market's ticks)."""
    btc = with_jump(recorded_ticks(n), at=btc_jump_at, factor=0.9)
    sol = [
        msgspec.structs.replace(
            tk,
            ts=tk.ts + sol_shift_ns,
            symbol="SOL/USDT",
            bid=tk.bid / 15,
            ask=tk.ask / 15,
            mid=tk.mid / 15,
            microprice=tk.microprice / 15,
        )
        for tk in with_jump(recorded_ticks(n), at=sol_jump_at, factor=0.9)[::sol_every]
    ]
    fills = [
        ev.Fill(
            ts=tk.ts,
            venue="binance",
            symbol=tk.symbol,
            trade_id=f"{tk.symbol}-{i}",
            side="buy",
            price=tk.ask,
            qty=qty,
        )
        for ticks, (qty, every) in ((btc, btc_buys), (sol, sol_buys))
        for i, tk in enumerate(ticks)
        if i % every == 0
    ]
    return TwoMarkets(btc, sol, sorted(fills, key=lambda f: f.ts))


def two_market_config(account: PortfolioLimits, global_limits: PortfolioLimits) -> RiskConfig:
    """Both markets in account ``main``, a 2 s window sliding by 200 ms, market moves
    allowed (50 %): what halts is the account's or the global limit."""
    return RiskConfig(
        window_ms=2_000,
        slide_ms=200,
        markets=tuple(
            MarketConfig(venue="binance", symbol=s, limits=MarketLimits(max_move_bps=5_000.0))
            for s in ("BTC/USDT", "SOL/USDT")
        ),
        accounts={"main": account},
        global_limits=global_limits,
    )


class Outputs(NamedTuple):
    states: list[ev.RiskState]
    alerts: list[ev.Alert]
    intents: list[ev.OrderIntent]


def run(events: list[Any], config: RiskConfig) -> Outputs:
    """``events`` (and :class:`InputEnded` markers: each goes to its ``topic``'s input)
    through a bounded ``risk_op`` under ``run_main``."""
    flow = Dataflow("risk_ends")
    src = op.input("inp", flow, TestingSource(events, batch_size=100))

    def read(topic: str) -> Any:
        kind = TOPICS[topic]
        return op.filter(
            f"only_{topic.replace('.', '_')}",
            src,
            lambda x: isinstance(x, kind) or (type(x) is InputEnded and x.topic == topic),
        )

    out = risk_op(
        "risk",
        read(t.TICKS.name),
        read(t.INDEX.name),
        read(t.FILLS.name),
        read(t.ORDER_EVENTS.name),
        read(t.BALANCES.name),
        read(t.CONTROL.name),
        config,
        quality=read(t.MD_QUALITY.name),
        bounded=True,
    )
    got = Outputs([], [], [])
    op.output("states", out.states, TestingSink(got.states))
    op.output("alerts", out.alerts, TestingSink(got.alerts))
    op.output("intents", out.intents, TestingSink(got.intents))
    run_main(flow)
    return got
