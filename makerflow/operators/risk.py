"""The risk operator: windows and limits over the market and private streams, and the kill
switch.

Stages, each keyed so that it spreads over workers:

- per market (``venue:symbol``): ticks, order events, fills, index marks and wall-clock
  heartbeats -> :class:`~makerflow.operators.risk_windows.MarketRisk` measures, market limits,
  staleness; summaries of PnL and open notional go on to the portfolio stage;
- per asset: fill legs and balance snapshots -> exposure per account, asset limits;
- per index basket: index-oracle deviation;
- per account and ``global``: summed PnL, drawdown and open notional;
- per scope: the :class:`~makerflow.operators.risk_limits.ScopeMachine` that takes breach
  onsets, the breaches that still hold, staleness pauses, ``halt`` / ``resume`` commands and
  event-time beats, and emits the RiskState (on each change and once per heartbeat period),
  the Alert and the cancel-all intents.

The logic is in the pure modules ``risk_buckets``, ``risk_windows``, ``risk_exposure``,
``risk_portfolio``, ``risk_limits``, ``kill_switch`` and ``staleness`` (the per-scope stage is
in ``risk_scopes``). The stateful stages that hold them are in ``risk_stages``; this module
only keys and routes, and wires the stages together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream

from makerflow.operators.merge_logic import (
    MergingLogic,
    StageEnded,
    fan_out_ends,
    fan_out_stage_ends,
    input_by_type,
    known_or,
    passes_ends,
)
from makerflow.operators.risk_buckets import WindowSpec
from makerflow.operators.risk_exposure import fill_legs
from makerflow.operators.risk_limits import RiskConfig
from makerflow.operators.risk_portfolio import MarketSummary
from makerflow.operators.risk_scopes import (
    Beat,
    Pause,
    ScopeLogic,
    Signal,
    audit,
    cancel_all_intents,
    keyed_stateful,
)
from makerflow.operators.risk_stages import (
    OTHER,
    IndexMark,
    _ExposureLogic,
    _IndexLogic,
    _MarketLogic,
    _PortfolioLogic,
    check_command,
    check_symbol,
    later_inputs,
)
from makerflow.operators.staleness import Heartbeat
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DataQuality,
    DeadLetter,
    Fill,
    IndexPrice,
    OrderEvent,
    OrderIntent,
    RiskState,
    Tick,
)
from makerflow.schemas.markers import InputEnded
from makerflow.schemas.scopes import (
    GLOBAL,
    account_scope,
    scopes_of_market,
    symbol_assets,
)

__all__ = ["RiskOut", "cancel_all_intents", "risk_op"]


@dataclass(frozen=True)
class RiskOut:
    """The outputs of :func:`risk_op`."""

    states: Stream[RiskState]
    """Every change of a scope's state (``risk.state``)."""
    alerts: Stream[Alert]
    """KillSwitchEngaged (critical), KillSwitchReleased and RiskLimitsChanged (info)."""
    intents: Stream[OrderIntent]
    """``cancel_all`` for every configured market in a halted scope (``orders.intents``)."""
    errs: Stream[DeadLetter]
    """Input risk could not use: bad symbols, bad scopes, bad limit parameters, resumes that
    name no one or no reason."""
    audit: Stream[Alert]
    """Every halt / resume / set_params command risk took, as an info Alert
    (``ControlCommand``) naming who and why: the trail of what people did."""


def _not_dead(x: Any) -> bool:
    return not isinstance(x, DeadLetter)


def _is_end(x: Any) -> bool:
    return type(x) is InputEnded


def _not_end(x: Any) -> bool:
    return type(x) is not InputEnded


MARKET_INPUTS = ("orders", "fills", "control", "quality", "index", "ticks")
"""A market's merge inputs in a bounded replay, in tie order (ticks last: the market's
state at a tick's time includes its orders, fills and index mark at that time)."""
_MARKET_INPUT_OF = input_by_type(
    {
        OrderEvent: "orders",
        Fill: "fills",
        ControlCommand: "control",
        DataQuality: "quality",
        IndexMark: "index",
        Tick: "ticks",
    }
)


def _tagged_input(x: tuple[str, Any]) -> str:
    return x[0]


def _tagged_event(x: tuple[str, Any]) -> Any:
    return x[1]


def _tag(name: str) -> Any:
    """A stage's ``(key, item)`` as ``(merge input of the next stage, item)``: each upstream
    key's outputs are in event time, so each is its own input."""
    return lambda kv: (f"{name}@{kv[0]}", kv[1])


@operator
def _basket_stage(step_id: str, up: KeyedStream[Any], build: Any) -> KeyedStream[Any]:
    """``op.stateful`` at the path ``op.stateful_flat_map`` gave the per-basket stage before
    it merged, so a recovery store written then resumes its breaches (the logic needs no
    key, and the merge takes a bare inner snapshot)."""
    return op.stateful("stateful", up, build)


@operator
def risk_op(
    step_id: str,
    ticks: Stream[Tick],
    index: Stream[IndexPrice],
    fills: Stream[Fill],
    order_events: Stream[OrderEvent],
    balances: Stream[BalanceSnapshot],
    control: Stream[ControlCommand],
    config: RiskConfig,
    clock: Stream[Heartbeat] | None = None,
    quality: Stream[DataQuality] | None = None,
    *,
    bounded: bool = False,
) -> RiskOut:
    """Risk windows, limits and the kill switch.

    ``clock`` carries wall-clock heartbeats from the edge
    (:class:`makerflow.sources.clock.WallClock`); without it market-data staleness is not
    judged (a backtest has no wall clock to be stale against). ``quality`` (the ticks
    stage's findings): a gap or a crossed book pauses the market until a good tick comes.

    ``bounded`` (a replay whose inputs end): each market's ticks, orders, fills, index
    marks, findings and commands, and each asset's fill legs, balances and commands, reach
    their stage in event time (:class:`~makerflow.operators.merge_logic.MergingLogic`);
    the inputs' end markers go to every configured market, asset and basket. Each of those
    keys says :class:`~makerflow.operators.merge_logic.StageEnded` once all its inputs
    ended, which goes on to every configured key of the next stage as the end of that
    upstream key's input: so the accounts and ``global`` merge the markets' summaries and
    their commands, and the scopes' machines merge every stage key's signals and the
    halt / resume commands, in event time too.
    """
    if bounded and clock is not None:
        raise ValueError("a bounded replay judges no wall-clock staleness: pass clock=None")
    spec = WindowSpec(config.window_ms * 1_000_000, config.slide_ms * 1_000_000)
    errs: list[Stream[DeadLetter]] = []
    market_keys = [m.key for m in config.markets]
    asset_keys = sorted({a for m in config.markets for a in symbol_assets(m.symbol)})
    accounts = sorted({m.account for m in config.markets})
    basket_keys = sorted(
        {m.index_basket for m in config.markets if m.index_basket is not None} | set(config.baskets)
    )
    portfolio_inputs, scope_inputs = later_inputs(config)
    portfolio_keys = list(portfolio_inputs)
    scope_keys = list(scope_inputs)

    def markets() -> list[str]:
        return market_keys

    def assets() -> list[str]:
        return asset_keys

    def checked(name: str, s: Stream[Any], check: Any) -> Stream[Any]:
        b = op.branch(f"{name}_ok", op.map(f"{name}_check", s, passes_ends(check)), _not_dead)
        errs.append(b.falses)
        return b.trues

    def to_markets(name: str, key: Any) -> Any:
        return fan_out_ends(name, lambda e: [(key(e), e)], markets)

    ticks = checked("ticks", ticks, check_symbol(f"{step_id}.ticks"))
    fills = checked("fills", fills, check_symbol(f"{step_id}.fills"))
    order_events = checked("orders", order_events, check_symbol(f"{step_id}.orders"))
    control = checked("control", control, check_command(f"{step_id}.control"))

    # End markers go with both kinds of commands, to every stage that reads them.
    params = op.filter("params", control, lambda c: _is_end(c) or c.command == "set_params")
    switch_cmds = op.filter(
        "switch_cmds", control, lambda c: _is_end(c) or c.command != "set_params"
    )

    def param_target(prefix: str) -> Any:
        return lambda c: _is_end(c) or c.scope.startswith(prefix)

    p_market = op.filter("p_market", params, param_target("market:"))
    p_asset = op.filter("p_asset", params, param_target("asset:"))
    p_portfolio = op.filter(
        "p_portfolio",
        params,
        lambda c: _is_end(c) or c.scope == GLOBAL or c.scope.startswith("account:"),
    )

    # Per market.
    marks = op.flat_map(
        "index_marks",
        index,
        fan_out_ends(
            "index",
            lambda ip: [
                (m.key, IndexMark(ip.ts, ip.price))
                for m in config.markets
                if m.index_basket == ip.basket
            ],
            markets,
        ),
    )

    def key_of(e: Any) -> str:
        return str(e.key)

    market_in: list[Any] = [
        op.flat_map("k_ticks", ticks, to_markets("ticks", key_of)),
        op.flat_map("k_orders", order_events, to_markets("orders", key_of)),
        op.flat_map("k_fills", fills, to_markets("fills", key_of)),
        op.flat_map(
            "k_pmarket", p_market, to_markets("control", lambda c: c.scope.split(":", 1)[1])
        ),
        marks,
    ]
    if quality is not None:
        market_in.append(op.flat_map("k_quality", quality, to_markets("quality", key_of)))
    clock_beats: list[Stream[Any]] = []
    if clock is not None:
        market_in.append(
            op.flat_map("beats", clock, lambda hb: [(m.key, hb) for m in config.markets])
        )
        # The wall clock is event time's stand-in at start (before any data): every
        # configured scope is published at the first heartbeat, then each period.
        configured = sorted(
            {s for m in config.markets for s in scopes_of_market(m.venue, m.symbol, m.account)}
        )
        clock_beats.append(
            op.flat_map(
                "clock_beats",
                clock,
                lambda hb: [(s, ("clock", Beat(s, hb.now))) for s in configured],
            )
        )
    market_step = f"{step_id}.markets"
    market_inputs = MARKET_INPUTS if quality is not None else MARKET_INPUTS[:3] + MARKET_INPUTS[4:]

    def market_logic(key: str, resume: Any) -> Any:
        def build(r: Any) -> Any:
            return _MarketLogic(market_step, key, config, spec, r)

        # Live: arrival order (see the README's Operations).
        return MergingLogic(
            lambda _v: market_inputs,
            _MARKET_INPUT_OF,
            build,
            resume,
            merge=bounded,
            tell_end=True,
        )

    market_out = keyed_stateful("market_state", op.merge("market_in", *market_in), market_logic)

    # Per asset. Each input item is (merge input, event): fills and balances come from
    # several Kafka keys (markets, accounts), each in order, so each is its own input.
    legs = op.flat_map(
        "legs",
        fills,
        fan_out_ends(
            "fills",
            lambda f: [(leg.asset, (f"fills|{f.key}", leg)) for leg in fill_legs(f)],
            assets,
            lambda k, e: (k, ("", e)),
        ),
    )
    exposure_inputs = (
        *(f"fills|{k}" for k in market_keys),
        "fills",
        *(f"balances|{a}" for a in accounts),
        "balances",
        "control",
    )

    def tagged(name: str, key: Any, part: Any) -> Any:
        return fan_out_ends(
            name, lambda e: [(key(e), (part(e), e))], assets, lambda k, e: (k, ("", e))
        )

    exposure_step = f"{step_id}.exposure"

    def exposure_logic(key: str, resume: Any) -> Any:
        def build(r: Any) -> Any:
            return _ExposureLogic(exposure_step, key, config, r)

        return MergingLogic(
            lambda _v: exposure_inputs,
            _tagged_input,
            build,
            resume,
            unwrap=_tagged_event,
            strip=_tagged_event,
            merge=bounded,
            tell_end=True,
        )

    exposure_in = op.merge(
        "exposure_in",
        legs,
        op.flat_map(
            "k_balances",
            balances,
            tagged("balances", lambda b: b.asset, lambda b: f"balances|{b.account}"),
        ),
        op.flat_map(
            "k_passet",
            p_asset,
            tagged("control", lambda c: c.scope.split(":", 1)[1], lambda _c: "control"),
        ),
    )
    exposure_out = keyed_stateful("exposure", exposure_in, exposure_logic)

    # Per basket: one input, in order already; merged only to say when it ended.
    def index_logic(resume: Any) -> Any:
        return MergingLogic(
            lambda _v: ("index",),
            lambda _v: "index",
            lambda r: _IndexLogic(config, r),
            resume,
            merge=bounded,
            tell_end=True,
        )

    index_out = _basket_stage(
        "index",
        op.flat_map(
            "k_index",
            index,
            fan_out_ends("index", lambda ip: [(ip.basket, ip)], lambda: basket_keys),
        ),
        index_logic,
    )

    def merged(inputs_of: dict[str, tuple[str, ...]], build: Any, tell_end: bool) -> Any:
        """A later stage's logic: its items are tagged ``(input, event)``; a key nobody
        configured has only the commands and the catch-all."""

        def logic(key: str, resume: Any) -> Any:
            inputs = inputs_of.get(key, ("control", OTHER))
            return MergingLogic(
                lambda _v: inputs,
                known_or(inputs, OTHER),
                lambda r: build(key, r),
                resume,
                unwrap=_tagged_event,
                strip=_tagged_event,
                merge=bounded,
                ended=(OTHER,),
                tell_end=tell_end,
            )

        return logic

    # Per account and globally: every market's summaries and the commands.
    market_items = op.map("market_items", market_out, _tag("markets"))
    summaries = op.filter(
        "summaries", market_items, lambda x: isinstance(x[1], MarketSummary | StageEnded)
    )
    portfolio_step = f"{step_id}.portfolio"
    portfolio_out = keyed_stateful(
        "portfolio",
        op.merge(
            "portfolio_in",
            op.flat_map(
                "summary_scopes",
                summaries,
                fan_out_stage_ends(
                    lambda name, s: [(account_scope(s.account), (name, s)), (GLOBAL, (name, s))],
                    lambda: portfolio_keys,
                ),
            ),
            op.flat_map(
                "k_pportfolio",
                p_portfolio,
                fan_out_ends(
                    "control",
                    lambda c: [(c.scope, ("control", c))],
                    lambda: portfolio_keys,
                    lambda k, e: (k, ("", e)),
                ),
            ),
        ),
        merged(
            portfolio_inputs,
            lambda key, r: _PortfolioLogic(portfolio_step, key, config, r),
            tell_end=True,
        ),
    )

    # Everything a stage said, except summaries, tagged with its merge input at the scopes.
    said = op.merge(
        "said",
        op.filter("market_said", market_items, lambda x: not isinstance(x[1], MarketSummary)),
        op.map("exposure_said", exposure_out, _tag("exposure")),
        op.map("index_said", index_out, _tag("index")),
        op.map("portfolio_said", portfolio_out, _tag("portfolio")),
    )
    signals = op.filter(
        "signals", said, lambda x: isinstance(x[1], Signal | Pause | Beat | StageEnded)
    )
    errs.append(
        op.filter_map("stage_errs", said, lambda x: x[1] if isinstance(x[1], DeadLetter) else None)
    )
    stage_alerts = op.filter_map(
        "stage_alerts", said, lambda x: x[1] if isinstance(x[1], Alert) else None
    )
    scope_out = keyed_stateful(
        "scopes",
        op.merge(
            "scope_in",
            op.flat_map(
                "k_signals",
                signals,
                fan_out_stage_ends(lambda name, s: [(s.scope, (name, s))], lambda: scope_keys),
            ),
            op.flat_map(
                "k_cmds",
                switch_cmds,
                fan_out_ends(
                    "control",
                    lambda c: [(c.scope, ("control", c))],
                    lambda: scope_keys,
                    lambda k, e: (k, ("", e)),
                ),
            ),
            *clock_beats,
        ),
        merged(scope_inputs, lambda key, r: ScopeLogic(key, config, r), tell_end=False),
    )
    emitted = op.map("emitted", scope_out, lambda kv: kv[1])
    return RiskOut(
        states=op.filter("states", emitted, lambda x: isinstance(x, RiskState)),
        alerts=op.merge(
            "alerts",
            op.filter("scope_alerts", emitted, lambda x: isinstance(x, Alert)),
            stage_alerts,
        ),
        intents=op.filter("intents", emitted, lambda x: isinstance(x, OrderIntent)),
        errs=op.merge("errs", *errs),
        audit=op.map("audit", op.filter("commands", control, _not_end), audit),
    )
