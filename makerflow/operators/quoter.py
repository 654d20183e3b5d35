"""The quoter: from ticks, index prices, risk states, own orders and fills to order intents.

:class:`Quoter` is pure (no I/O, no clock; event time comes from the events), one instance per
market. On each event it updates what it knows (orders and fills in its
:class:`~makerflow.operators.order_state.OrderState`, the one order truth; inventory from
those fills, net of base-asset fees and re-anchored to the venue's balances; volatility and
the trades' arrival intensity from ticks; halts from risk states and control commands), asks
its model for a reservation price and half spread (GLFT by default; inventory in base units,
maker fee added), lays out the ladder (the side that would pass ``max_position`` left out,
the adding side's sizes shrunk with the inventory) and diffs it against the live orders into
place and cancel intents. A live order within ``refresh_fraction`` of the half spread of its
desired price is left alone until ``max_quote_age_s``; one younger than
``min_quote_lifetime_s`` too, unless the market has run into it (on the wrong side of the
mid, or a half spread more aggressive than wanted).

Client order ids (:mod:`~makerflow.operators.quoter_ids`) are deterministic, so a retried or
replayed intent can never place a second order. Order bookkeeping lives in
:mod:`~makerflow.operators.quoter_orders`, pricing and the ladder diff in
:mod:`~makerflow.operators.quoter_ladder`; :func:`~makerflow.operators.quoting.quoting_op` is
the Bytewax operator around it, keyed by ``venue:symbol``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from makerflow.operators.intensity import IntensityState
from makerflow.operators.inventory import Inventory
from makerflow.operators.ladder import MarketSpec, level_quantities
from makerflow.operators.order_state import OrderState
from makerflow.operators.quoter_ids import ID_PREFIX, order_slot, session_id
from makerflow.operators.quoter_ladder import QuoterLadder
from makerflow.operators.quoter_params import (
    intensity_key,
    ladder_shape,
    quoting_changes,
    quoting_model,
    trade_intensity,
)
from makerflow.operators.quoter_types import (
    NOTHING,
    LiveOrder,
    QuoterInputError,
    QuoterOutput,
    QuoterSnapshot,
    finite_positive,
    output_of,
)
from makerflow.operators.quoting_config import MarketConfig, QuotingParams
from makerflow.operators.quoting_models import NS, QuotingModel
from makerflow.operators.volatility import GridVolatility, VolState
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    Fill,
    IndexPrice,
    InventoryCorrection,
    OrderEvent,
    OrderIntent,
    RiskState,
    Tick,
)
from makerflow.schemas.scopes import covers

logger = logging.getLogger(__name__)

_MAX_TERMINAL = 256
"""Closed orders the quoter's order state keeps whole (late events for them stay harmless)."""
_ID_MEMORY = 4096
"""Client ids of forgotten closed orders, and fill trade ids, remembered to drop repeats."""

_E = TypeVar("_E")


def _reports(fn: Callable[[Quoter, _E], QuoterOutput]) -> Callable[[Quoter, _E], QuoterOutput]:
    """Attach the alerts and corrections made while handling an event to its output."""

    @functools.wraps(fn)
    def handle(self: Quoter, event: _E) -> QuoterOutput:
        out = fn(self, event)
        if self._alerts or self._corrections:
            out = replace(
                out,
                alerts=out.alerts + tuple(self._alerts),
                corrections=out.corrections + tuple(self._corrections),
            )
            self._alerts.clear()
            self._corrections.clear()
        return out

    return handle


class Quoter(QuoterLadder):
    """Quotes one market. Feed it events in event-time order; each ``on_*`` returns the
    intents to send and, when the desired ladder changed, the new ladder."""

    def __init__(
        self,
        market: MarketConfig,
        params: QuotingParams,
        *,
        id_namespace: str = "",
        cancel_on_start: bool = True,
        balance_tolerance: float | None = None,
        snapshot: QuoterSnapshot | None = None,
    ) -> None:
        self.market = market
        self.spec = MarketSpec(
            tick_size=market.tick_size,
            lot_size=market.lot_size,
            min_qty=market.min_qty,
            min_notional=market.min_notional,
        )
        self.id_namespace = id_namespace
        self.cancel_on_start = cancel_on_start
        self._base_params = params
        self.overrides: dict[str, Any] = {}
        self.session = ""
        self.seq = 0
        self.order_state = OrderState(
            prefix=ID_PREFIX,
            tolerance=market.lot_size / 2,
            max_terminal=_MAX_TERMINAL,
            max_tombstones=_ID_MEMORY,
            max_trade_ids=_ID_MEMORY,
        )
        """The one order truth of this market: the quoter's own intents, the venue's order
        events and fills, each applied once, in any order."""
        self._cancels: dict[str, tuple[int, int]] = {}
        """client id -> (last cancel ts, cancels sent): the quoter's retry timer."""
        self._next_retry = 0
        """No cancel is due for a retry before this time (0: look)."""
        self._live_cache: tuple[int, int, bool, list[LiveOrder]] | None = None
        self._cancels_version = 0
        tolerance = market.lot_size if balance_tolerance is None else balance_tolerance
        self._inventory = Inventory(
            market.venue,
            market.symbol,
            market.account,
            market.initial_inventory,
            tolerance=tolerance,
            max_recent=_ID_MEMORY,
        )
        self._alerts: list[Alert] = []
        self._corrections: list[InventoryCorrection] = []
        self.risk_halts: set[str] = set()
        self.control_halts: set[str] = set()
        self.last_tick: Tick | None = None
        self.index: tuple[int, float] | None = None
        self._blocked: dict[tuple[str, int], int] = {}
        self._last_ladder: (
            tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]] | None
        ) = None
        self.vol = GridVolatility(
            params.sigma_grid_s, params.sigma_half_life_s, params.sigma_initial
        )
        self.intensity = trade_intensity(params)
        self.params = params
        self.model: QuotingModel = quoting_model(params)
        self.shape = ladder_shape(params)
        self._qtys = level_quantities(self.spec, self.shape)
        if snapshot is not None:
            self._restore(snapshot)

    # --- state ----------------------------------------------------------------------------

    @property
    def orders(self) -> dict[str, LiveOrder]:
        """The open orders this quoter manages (its own, adopted ones, and those it is
        cancelling), oldest first: a view of the order state, not a copy."""
        return {o.client_order_id: o for o in self._live()}

    @property
    def halted(self) -> bool:
        return bool(self.risk_halts or self.control_halts)

    @property
    def sigma(self) -> float:
        return self.vol.sigma

    def _apply_params(self, params: QuotingParams) -> None:
        old = self.params
        self.params = params
        self.model = quoting_model(params)
        self.shape = ladder_shape(params)
        self._qtys = level_quantities(self.spec, self.shape)
        if params.sigma_grid_s != old.sigma_grid_s:
            self.vol = GridVolatility(
                params.sigma_grid_s, params.sigma_half_life_s, params.sigma_initial
            )
        else:
            self.vol.set_half_life(params.sigma_half_life_s)
        if intensity_key(params) != intensity_key(old):
            state = self.intensity.state()
            self.intensity = trade_intensity(params)
            if params.kappa == old.kappa:  # same bins: the trades seen still count
                self.intensity.load(state)
                self.intensity.invalidate()

    def snapshot(self) -> QuoterSnapshot:
        v = self.vol
        return QuoterSnapshot(
            market=self.key,
            overrides=dict(self.overrides),
            session=self.session,
            seq=self.seq,
            inventory=self._inventory.snapshot(),
            orders=self.order_state.snapshot(),
            cancels=tuple((cid, ts, n) for cid, (ts, n) in self._cancels.items()),
            vol=v.state(),
            risk_halts=tuple(sorted(self.risk_halts)),
            control_halts=tuple(sorted(self.control_halts)),
            last_tick=self.last_tick,
            index=self.index,
            blocked=tuple((s, lvl, until) for (s, lvl), until in sorted(self._blocked.items())),
            last_ladder=self._last_ladder,
            intensity=self.intensity.state(),
        )

    def _restore(self, s: QuoterSnapshot) -> None:
        if s.market != self.key:
            raise ValueError(f"snapshot of {s.market} cannot resume the quoter of {self.key}")
        if s.overrides:
            try:
                self._apply_params(self._base_params.replace(s.overrides))
                self.overrides = dict(s.overrides)
            except ValueError as exc:
                logger.warning("%s: saved parameter overrides dropped: %s", self.key, exc)
        self.session = s.session
        self.seq = s.seq
        inv = self._inventory
        self._inventory = Inventory(
            inv.venue,
            inv.symbol,
            inv.account,
            tolerance=inv.tolerance,
            max_recent=_ID_MEMORY,
            snapshot=s.inventory,
        )
        st = self.order_state
        self.order_state = OrderState(
            prefix=st.prefix,
            tolerance=st.tolerance,
            max_terminal=_MAX_TERMINAL,
            max_tombstones=_ID_MEMORY,
            max_trade_ids=_ID_MEMORY,
            snapshot=s.orders,
        )
        self._cancels = {cid: (ts, n) for cid, ts, n in s.cancels}
        self._live_cache = None
        self._quiet_diff = None
        self._next_retry = 0
        if len(s.vol) == 10:
            vol_state: VolState = s.vol
            self.vol = GridVolatility.restore(
                vol_state, self.params.sigma_grid_s, self.params.sigma_half_life_s
            )
        else:
            logger.warning("%s: saved volatility of an older version dropped", self.key)
        if s.intensity is not None and len(s.intensity) == 5:
            intensity_state: IntensityState = s.intensity
            self.intensity.load(intensity_state)
        self.risk_halts = set(s.risk_halts)
        self.control_halts = set(s.control_halts)
        self.last_tick = s.last_tick
        self.index = s.index
        self._blocked = {(side, lvl): until for side, lvl, until in s.blocked}
        self._last_ladder = s.last_ladder

    # --- events -----------------------------------------------------------------------------

    def on_event(self, event: Any) -> QuoterOutput:
        """Dispatch ``event`` to the matching ``on_*`` method."""
        if isinstance(event, Tick):
            return self.on_tick(event)
        if isinstance(event, Fill):
            return self.on_fill(event)
        if isinstance(event, OrderEvent):
            return self.on_order_event(event)
        if isinstance(event, RiskState):
            return self.on_risk(event)
        if isinstance(event, IndexPrice):
            return self.on_index(event)
        if isinstance(event, ControlCommand):
            return self.on_control(event)
        if isinstance(event, BalanceSnapshot):
            return self.on_balance(event)
        raise QuoterInputError(f"the quoter does not take {type(event).__name__} events")

    @_reports
    def on_tick(self, tick: Tick) -> QuoterOutput:
        if not (finite_positive(tick.bid) and finite_positive(tick.ask)):
            raise QuoterInputError(
                f"tick of {tick.key} at {tick.ts} has unusable prices bid={tick.bid}"
                f" ask={tick.ask}: expected finite prices > 0"
            )
        if self.last_tick is not None and tick.ts < self.last_tick.ts:
            return NOTHING  # late tick: the book has moved on since
        self._inventory.start(tick.ts)  # fills before the first tick are in initial_inventory
        start = self._start(tick.ts)
        if tick.bid >= tick.ask:
            # crossed book: wait for the next tick rather than quote into it
            return output_of(start)
        self.vol.update(tick.ts, tick.mid)
        if tick.reason == "trade" and tick.last_price is not None:
            # the distance from the mid of the book the trade met: what a quote there needed
            self.intensity.add(tick.ts, abs(tick.last_price - tick.mid))
        self.last_tick = tick
        if self.halted:
            return output_of(start + self._retry_cancels(tick.ts))
        return self._requote(tick.ts, start)

    @_reports
    def on_index(self, index: IndexPrice) -> QuoterOutput:
        start = self._start(index.ts)
        usable = index.price is not None and finite_positive(index.price) and not index.flagged
        self.index = (index.ts, float(index.price)) if usable and index.price else None
        if self.params.fair_price == "index" and not self.halted:
            return self._requote(index.ts, start)
        return output_of(start)

    @_reports
    def on_risk(self, state: RiskState) -> QuoterOutput:
        m = self.market
        if not covers(state.scope, m.venue, m.symbol, m.account):
            return NOTHING
        start = self._start(state.ts)
        was = self.halted
        if state.status != "ACTIVE":  # HALTED (kill switch) or PAUSED (stale data)
            self.risk_halts.add(state.scope)
        else:
            self.risk_halts.discard(state.scope)
        reason = f"risk {state.scope} {state.status}: {', '.join(state.reasons)}".rstrip(": ")
        return self._after_halt_change(state.ts, was, reason, start)

    @_reports
    def on_control(self, cmd: ControlCommand) -> QuoterOutput:
        m = self.market
        if not covers(cmd.scope, m.venue, m.symbol, m.account):
            return NOTHING
        if cmd.command == "set_params":
            changes = quoting_changes(cmd.params)
            if not changes:
                return NOTHING  # parameters of another service (risk) on the shared topic
            try:
                params = self._base_params.replace({**self.overrides, **changes})
            except ValueError as exc:
                raise QuoterInputError(str(exc)) from None
            start = self._start(cmd.ts)
            self.overrides.update(changes)
            self._apply_params(params)
            logger.info("%s: parameters set by %s: %s", self.key, cmd.issued_by, changes)
            if self.halted:
                return output_of(start)
            return self._requote(cmd.ts, start)
        start = self._start(cmd.ts)
        was = self.halted
        if cmd.command == "halt":
            self.control_halts.add(cmd.scope)
        else:
            self.control_halts.discard(cmd.scope)
        reason = f"control {cmd.command} {cmd.scope} by {cmd.issued_by or '?'}: {cmd.reason}"
        return self._after_halt_change(cmd.ts, was, reason.rstrip(": "), start)

    @_reports
    def on_order_event(self, ev: OrderEvent) -> QuoterOutput:
        if ev.account != self.market.account or ev.key != self.key:
            return NOTHING
        t = self.order_state.on_order_event(ev)
        if t is None:
            return NOTHING  # not ours (no prefix), a repeat, or a long-closed order
        order = t.order
        if not order.sent and not order.adopted:
            # An orphan (our prefix, never placed by this run): kept in the order state but
            # out of the quotes; execution's sweep cancels or adopts it and alerts, once.
            return NOTHING
        if not t.changed_state:
            return NOTHING
        if not order.terminal:
            return NOTHING  # acked, partially filled, unknown: the slot stays taken
        cid = order.client_order_id
        self._cancels.pop(cid, None)
        if order.state == "rejected":
            slot = order_slot(cid)
            if slot is not None:
                backoff = round(self.params.reject_backoff_s * NS)
                self._blocked[slot] = ev.ts + backoff
            logger.info("%s: order %s rejected: %s", self.key, cid, ev.reason)
        if self.halted or order.cancel_requested:
            return NOTHING  # a cancel we asked for: its replacement is already out
        return self._requote(ev.ts, [])

    @_reports
    def on_fill(self, fill: Fill) -> QuoterOutput:
        if fill.account != self.market.account or fill.key != self.key:
            return NOTHING
        if not (finite_positive(fill.qty) and finite_positive(fill.price)):
            raise QuoterInputError(
                f"fill {fill.trade_id} of {fill.key} has qty={fill.qty} price={fill.price}:"
                " expected finite values > 0"
            )
        effect = self.order_state.on_fill(fill)
        if effect is None:
            return NOTHING  # the private stream repeats itself after a reconnect
        start = self._start(fill.ts)
        self._inventory.on_fill(fill)
        if effect.order is not None and effect.order.terminal:
            self._cancels.pop(effect.order.client_order_id, None)
        if self.halted:
            return output_of(start)
        return self._requote(fill.ts, start)

    @_reports
    def on_balance(self, snap: BalanceSnapshot) -> QuoterOutput:
        """Re-anchor inventory to the venue's base-asset balance (see
        :class:`~makerflow.operators.inventory.Inventory`)."""
        try:
            correction = self._inventory.on_balance(snap)
        except ValueError as exc:
            raise QuoterInputError(str(exc)) from None
        if correction is None:
            return NOTHING
        logger.warning("%s: inventory corrected: %s", self.key, correction.reason)
        self._corrections.append(correction)
        if self.halted:
            return NOTHING
        return self._requote(snap.ts, [])

    # --- internals ----------------------------------------------------------------------------

    def _start(self, ts: int) -> list[OrderIntent]:
        """On the first event of a run: fix the id session and clear leftover orders."""
        if self.session:
            return []
        m = self.market
        self.session = session_id(self.id_namespace, m.account, m.venue, m.symbol, ts)
        if not self.cancel_on_start:
            return []
        return [self._cancel_all(ts, "start: cancel orders left by an earlier run")]

    def _after_halt_change(
        self, ts: int, was: bool, reason: str, start: list[OrderIntent]
    ) -> QuoterOutput:
        if self.halted:
            intents = list(start)
            if not was:
                # Everything out at once: cancel_all catches orders we never heard about,
                # the cancels by id make sure each known one goes even if cancel_all fails.
                intents.append(self._cancel_all(ts, f"halt: {reason}"))
                intents.extend(self._cancel(ts, o, f"halt: {reason}") for o in self._live())
            else:
                intents.extend(
                    self._cancel(ts, o, f"halt: {reason}")
                    for o in self._live()
                    if o.cancel_ts is None
                )
            ladder = None
            if self._last_ladder != ((), ()) and self.last_tick is not None:
                # Publish that nothing is quoted any more.
                self._last_ladder = ((), ())
                mid = self.last_tick.mid
                ladder = self._ladder_event(ts, mid, mid, 0.0, self._last_ladder)
            return QuoterOutput(intents=tuple(intents), ladder=ladder)
        if was:
            logger.info("%s: resumed (%s)", self.key, reason)
            return self._requote(ts, start)
        return output_of(start)
