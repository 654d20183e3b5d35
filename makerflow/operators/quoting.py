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

Client order ids are deterministic: ``mf-<h>-<side><level>-<seq>`` where ``h`` hashes the
id namespace, account, market and the event time of the quoter's first event, ``side`` is
``b`` or ``s`` and ``seq`` counts the market's placements in base 36. The same input gives
the same ids, so a retried or replayed intent can never place a second order; a quoter that
starts later on the stream gets a new ``h``. At most 32 characters of ``[a-z0-9-]``, which
Binance's ``newClientOrderId`` (and most exchanges) accept.

Order truth: an order whose answer was lost (``unknown``) keeps its ladder slot, and nothing
replaces it until the venue says what happened. A cancel stays ``pending_cancel`` until the
venue closes the order; unconfirmed cancels are sent again, ever more slowly, never forgotten.
An order with the ``mf-`` prefix that this run never placed (an orphan) is cancelled, or
adopted with ``orphans="adopt"``, with an ``OrphanOrder`` alert either way.

:func:`quoting_op` is the Bytewax operator around it, keyed by ``venue:symbol``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeGuard, TypeVar

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.intensity import Intensity, IntensityState, TradeIntensity
from makerflow.operators.inventory import Inventory, InventorySnapshot, base_asset
from makerflow.operators.ladder import (
    Ladder,
    LadderShape,
    MarketSpec,
    build_ladder,
    inventory_sizes,
    level_quantities,
)
from makerflow.operators.order_state import (
    Order,
    OrderState,
    OrderStateName,
    OrderStateSnapshot,
)
from makerflow.operators.quote_hygiene import Hygiene
from makerflow.operators.quoting_config import MarketConfig, QuotingConfig, QuotingParams
from makerflow.operators.quoting_models import (
    NS,
    AvellanedaStoikov,
    FixedSpread,
    Glft,
    QuotingModel,
)
from makerflow.operators.volatility import GridVolatility, VolState
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DeadLetter,
    Fill,
    IndexPrice,
    InventoryCorrection,
    OrderEvent,
    OrderIntent,
    QuoteLadder,
    QuoteLevel,
    RiskState,
    Side,
    Tick,
)
from makerflow.schemas.scopes import covers, validate_scope

logger = logging.getLogger(__name__)

MAX_CLIENT_ID = 32
ID_PREFIX = "mf-"
"""Every client order id a quoter makes starts with it; an open order with it that the
order state does not know is an orphan."""
_SLOT = re.compile(r"mf-[0-9a-z]+-([bs])(\d+)-[0-9a-z]+")
_MAX_TERMINAL = 256
"""Closed orders the quoter's order state keeps whole (late events for them stay harmless)."""
_ID_MEMORY = 4096
"""Client ids of forgotten closed orders, and fill trade ids, remembered to drop repeats."""
_CANCEL_BACKOFF_CAP = 6
"""Past ``max_cancel_retries`` the wait between resent cancels doubles, up to 2**6 times."""
_SIDES: tuple[Side, Side] = ("buy", "sell")
OrphanPolicy = Literal["cancel", "adopt"]


class QuoterInputError(ValueError):
    """An event the quoter cannot use (bad prices, bad parameters); it becomes a dead letter."""


class LiveOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One of our open orders as the quoter sees it: a read-only view of the order state's
    record (:class:`~makerflow.operators.order_state.Order`) with the ladder slot and the
    quoter's own cancel timer."""

    client_order_id: str
    side: Side
    level: int
    """The ladder level, from the client id; -1 for an order whose id names none."""
    price: float
    qty: float
    filled: float = 0.0
    placed_ts: int
    acked: bool = False
    cancel_ts: int | None = None
    """When a cancel was last requested; the order no longer counts as a quote."""
    cancels_sent: int = 0
    state: OrderStateName = "pending_new"


class QuoterSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a quoter needs to resume: small, immutable, picklable."""

    market: str
    overrides: dict[str, Any]
    session: str
    seq: int
    inventory: InventorySnapshot
    orders: OrderStateSnapshot
    cancels: tuple[tuple[str, int, int], ...]
    """(client id, last cancel ts, cancels sent) of the cancels the quoter is waiting on."""
    vol: tuple[Any, ...]
    """:meth:`GridVolatility.state`."""
    risk_halts: tuple[str, ...]
    control_halts: tuple[str, ...]
    last_tick: Tick | None
    index: tuple[int, float] | None
    blocked: tuple[tuple[str, int, int], ...]
    last_ladder: tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]] | None
    intensity: tuple[Any, ...] | None = None
    """:meth:`TradeIntensity.state`."""


@dataclass(frozen=True, slots=True)
class QuoterOutput:
    """What one event made the quoter do."""

    intents: tuple[OrderIntent, ...] = ()
    ladder: QuoteLadder | None = None
    alerts: tuple[Alert, ...] = ()
    """Orphan orders found, cancels the venue has not confirmed after the retries."""
    corrections: tuple[InventoryCorrection, ...] = ()
    """The position re-anchored to the venue's balance."""


_NOTHING = QuoterOutput()


def client_order_id(session: str, side: Side, level: int, seq: int) -> str:
    """``mf-<session>-<b|s><level>-<seq base 36>``."""
    cid = f"mf-{session}-{'b' if side == 'buy' else 's'}{level}-{_base36(seq)}"
    if len(cid) > MAX_CLIENT_ID:
        raise ValueError(f"client order id {cid!r} is longer than {MAX_CLIENT_ID} characters")
    return cid


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def session_id(namespace: str, account: str, venue: str, symbol: str, first_ts: int) -> str:
    """The 10 hex characters that make a quoter run's client order ids its own."""
    text = f"{namespace}|{account}|{venue}|{symbol}|{first_ts}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


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


def _finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _model(params: QuotingParams) -> QuotingModel:
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


def _intensity(params: QuotingParams) -> TradeIntensity:
    return TradeIntensity(
        _INTENSITY_SPAN / (params.kappa * _INTENSITY_BINS),
        bins=_INTENSITY_BINS,
        window_s=params.intensity_window_s,
        slice_s=min(10.0, params.intensity_window_s),
        min_trades=params.intensity_min_trades,
        kappa_min=params.kappa_min,
        kappa_max=params.kappa_max,
    )


def _intensity_key(params: QuotingParams) -> tuple[float, ...]:
    return (
        params.kappa,
        params.intensity_window_s,
        params.intensity_min_trades,
        params.kappa_min,
        params.kappa_max,
    )


def _shape(params: QuotingParams) -> LadderShape:
    return LadderShape(
        levels=params.levels,
        level_spacing_bps=params.level_spacing_bps,
        order_size=params.order_size,
        size_multiplier=params.size_multiplier,
        min_spread_bps=params.min_spread_bps,
        max_spread_bps=params.max_spread_bps,
        price_band_bps=params.price_band_bps,
    )


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


class Quoter:
    """Quotes one market. Feed it events in event-time order; each ``on_*`` returns the
    intents to send and, when the desired ladder changed, the new ladder."""

    def __init__(
        self,
        market: MarketConfig,
        params: QuotingParams,
        *,
        id_namespace: str = "",
        cancel_on_start: bool = True,
        orphans: OrphanPolicy = "cancel",
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
        if orphans not in ("cancel", "adopt"):
            raise ValueError(f"orphans must be 'cancel' or 'adopt', not {orphans!r}")
        self.orphan_policy: OrphanPolicy = orphans
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
        self.intensity = _intensity(params)
        self.params = params
        self.model: QuotingModel = _model(params)
        self.shape = _shape(params)
        self._qtys = level_quantities(self.spec, self.shape)
        if snapshot is not None:
            self._restore(snapshot)

    # --- state ----------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.market.key

    @property
    def inventory(self) -> float:
        """The base-asset position: fills once each, net of base fees, venue-anchored."""
        return self._inventory.position

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

    @property
    def liquidity(self) -> Intensity | None:
        """The arrival intensity fitted from trades, None while the fallback applies."""
        if not self.params.estimate_intensity or self.last_tick is None:
            return None
        return self.intensity.estimate(self.last_tick.ts)

    def _apply_params(self, params: QuotingParams) -> None:
        old = self.params
        self.params = params
        self.model = _model(params)
        self.shape = _shape(params)
        self._qtys = level_quantities(self.spec, self.shape)
        if params.sigma_grid_s != old.sigma_grid_s:
            self.vol = GridVolatility(
                params.sigma_grid_s, params.sigma_half_life_s, params.sigma_initial
            )
        else:
            self.vol.set_half_life(params.sigma_half_life_s)
        if _intensity_key(params) != _intensity_key(old):
            state = self.intensity.state()
            self.intensity = _intensity(params)
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
        if not (_finite_positive(tick.bid) and _finite_positive(tick.ask)):
            raise QuoterInputError(
                f"tick of {tick.key} at {tick.ts} has unusable prices bid={tick.bid}"
                f" ask={tick.ask}: expected finite prices > 0"
            )
        if self.last_tick is not None and tick.ts < self.last_tick.ts:
            return _NOTHING  # late tick: the book has moved on since
        self._inventory.start(tick.ts)  # fills before the first tick are in initial_inventory
        start = self._start(tick.ts)
        if tick.bid >= tick.ask:
            return _out(start)  # crossed book: wait for the next tick rather than quote into it
        self.vol.update(tick.ts, tick.mid)
        if tick.reason == "trade" and tick.last_price is not None:
            # the distance from the mid of the book the trade met: what a quote there needed
            self.intensity.add(tick.ts, abs(tick.last_price - tick.mid))
        self.last_tick = tick
        if self.halted:
            return _out(start + self._retry_cancels(tick.ts))
        return self._requote(tick.ts, start)

    @_reports
    def on_index(self, index: IndexPrice) -> QuoterOutput:
        start = self._start(index.ts)
        usable = index.price is not None and _finite_positive(index.price) and not index.flagged
        self.index = (index.ts, float(index.price)) if usable and index.price else None
        if self.params.fair_price == "index" and not self.halted:
            return self._requote(index.ts, start)
        return _out(start)

    @_reports
    def on_risk(self, state: RiskState) -> QuoterOutput:
        m = self.market
        if not covers(state.scope, m.venue, m.symbol, m.account):
            return _NOTHING
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
            return _NOTHING
        if cmd.command == "set_params":
            changes = quoting_changes(cmd.params)
            if not changes:
                return _NOTHING  # parameters of another service (risk) on the shared topic
            try:
                params = self._base_params.replace({**self.overrides, **changes})
            except ValueError as exc:
                raise QuoterInputError(str(exc)) from None
            start = self._start(cmd.ts)
            self.overrides.update(changes)
            self._apply_params(params)
            logger.info("%s: parameters set by %s: %s", self.key, cmd.issued_by, changes)
            if self.halted:
                return _out(start)
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
            return _NOTHING
        t = self.order_state.on_order_event(ev)
        if t is None:
            return _NOTHING  # not ours (no prefix), a repeat, or a long-closed order
        order = t.order
        if not order.sent and not order.adopted:
            if order.cancel_requested or order.terminal:
                return _NOTHING  # an orphan already being cancelled, or closed
            return _out(self._orphan(ev.ts, order))
        if not t.changed_state:
            return _NOTHING
        if not order.terminal:
            return _NOTHING  # acked, partially filled, unknown: the slot stays taken
        cid = order.client_order_id
        self._cancels.pop(cid, None)
        if order.state == "rejected":
            slot = _slot(cid)
            if slot is not None:
                backoff = round(self.params.reject_backoff_s * NS)
                self._blocked[slot] = ev.ts + backoff
            logger.info("%s: order %s rejected: %s", self.key, cid, ev.reason)
        if self.halted or order.cancel_requested:
            return _NOTHING  # a cancel we asked for: its replacement is already out
        return self._requote(ev.ts, [])

    @_reports
    def on_fill(self, fill: Fill) -> QuoterOutput:
        if fill.account != self.market.account or fill.key != self.key:
            return _NOTHING
        if not (_finite_positive(fill.qty) and _finite_positive(fill.price)):
            raise QuoterInputError(
                f"fill {fill.trade_id} of {fill.key} has qty={fill.qty} price={fill.price}:"
                " expected finite values > 0"
            )
        effect = self.order_state.on_fill(fill)
        if effect is None:
            return _NOTHING  # the private stream repeats itself after a reconnect
        start = self._start(fill.ts)
        self._inventory.on_fill(fill)
        if effect.order is not None and effect.order.terminal:
            self._cancels.pop(effect.order.client_order_id, None)
        if self.halted:
            return _out(start)
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
            return _NOTHING
        logger.warning("%s: inventory corrected: %s", self.key, correction.reason)
        self._corrections.append(correction)
        if self.halted:
            return _NOTHING
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

    def _cancel_all(self, ts: int, reason: str) -> OrderIntent:
        m = self.market
        return OrderIntent(
            ts=ts,
            venue=m.venue,
            symbol=m.symbol,
            account=m.account,
            action="cancel_all",
            reason=reason,
        )

    def _cancel(self, ts: int, order: LiveOrder | Order, reason: str) -> OrderIntent:
        m = self.market
        cid = order.client_order_id
        _, sent = self._cancels.get(cid, (ts, 0))
        self._cancels[cid] = (ts, sent + 1)
        self._cancels_version += 1
        retry = round(self.params.cancel_retry_s * NS)
        self._next_retry = min(self._next_retry, ts + retry) if self._next_retry else ts + retry
        intent = OrderIntent(
            ts=ts,
            venue=m.venue,
            symbol=m.symbol,
            account=m.account,
            action="cancel",
            client_order_id=cid,
            side=order.side,
            price=order.price,
            qty=order.qty,
            reason=reason,
        )
        self.order_state.on_intent(intent)  # pending_cancel until the venue closes it
        return intent

    def _orphan(self, ts: int, order: Order) -> list[OrderIntent]:
        """An open order with our prefix that this run never placed: cancel or adopt it."""
        cid = order.client_order_id
        if self.orphan_policy == "adopt":
            self.order_state.adopt(cid)
            done, intents = "adopted: managed as one of ours from now on", []
        else:
            done, intents = "cancelled", [self._cancel(ts, order, "orphan: not placed by us")]
        m = self.market
        self._alerts.append(
            Alert(
                ts=ts,
                name="OrphanOrder",
                severity="warning",
                scope=f"market:{m.venue}:{m.symbol}",
                message=(
                    f"{order.state} order {cid} ({order.side} {order.qty} @ {order.price}) on "
                    f"{self.key} has our prefix but this run never placed it; {done}"
                ),
                labels={"client_order_id": cid, "action": self.orphan_policy},
            )
        )
        logger.warning("%s: orphan order %s: %s", self.key, cid, done)
        return intents

    def _place(
        self, ts: int, side: Side, level: int, price: float, qty: float, ref: float
    ) -> OrderIntent:
        m = self.market
        cid = client_order_id(self.session, side, level, self.seq)
        self.seq += 1
        intent = OrderIntent(
            ts=ts,
            venue=m.venue,
            symbol=m.symbol,
            account=m.account,
            action="place",
            client_order_id=cid,
            side=side,
            price=price,
            qty=qty,
            post_only=self.params.post_only,
            reference=ref,
            reason=f"level {level}",
        )
        self.order_state.on_intent(intent)  # pending_new until the venue answers
        return intent

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
        return _out(start)

    def _live(self, cancelling: bool = True) -> list[LiveOrder]:
        """The managed open orders, oldest first (the order the intents were made in, the
        same on every run); without ``cancelling``, only those no cancel was asked for."""
        st = self.order_state
        key = (st.version, self._cancels_version, cancelling)
        cached = self._live_cache
        if cached is not None and cached[:3] == key:
            return cached[3]  # nothing changed since: the same view (read-only)
        out: list[LiveOrder] = []
        cancels = self._cancels
        orders = st.open_orders(self.key) if cancelling else st.working_orders(self.key)
        for o in orders:
            timer = cancels.get(o.client_order_id)
            if not (o.sent or o.adopted or timer is not None):
                continue  # an orphan still to be handled
            slot = _slot(o.client_order_id)
            cancel_ts, sent = timer if timer is not None else (None, 0)
            if cancel_ts is None and o.cancel_requested:
                cancel_ts = o.last_ts  # cancelled by someone else's cancel_all
            out.append(
                LiveOrder(
                    client_order_id=o.client_order_id,
                    side=o.side,
                    level=slot[1] if slot is not None else -1,
                    price=o.price if o.price is not None else 0.0,
                    qty=o.qty if o.qty is not None else 0.0,
                    filled=o.filled,
                    placed_ts=o.placed_ts if o.placed_ts is not None else o.last_ts,
                    acked=o.state not in ("pending_new", "unknown"),
                    cancel_ts=cancel_ts,
                    cancels_sent=sent,
                    state=o.state,
                )
            )
        self._live_cache = (*key, out)
        return out

    def _retry_cancels(self, ts: int) -> list[OrderIntent]:
        """Cancels the venue has not confirmed, sent again: every ``cancel_retry_s`` up to
        ``max_cancel_retries`` times, then ever more slowly (doubling, capped). The order
        stays ``pending_cancel`` in the order state until the venue closes it."""
        if not self._cancels or ts < self._next_retry:
            return []
        retry = round(self.params.cancel_retry_s * NS)
        limit = self.params.max_cancel_retries
        due: list[str] = []
        next_retry: int | None = None
        for cid, (cancel_ts, sent) in self._cancels.items():
            over = min(max(sent - limit, 0), _CANCEL_BACKOFF_CAP)
            at = cancel_ts + retry * 2**over
            if ts >= at:
                due.append(cid)
            else:
                next_retry = at if next_retry is None else min(next_retry, at)
        out = []
        for cid in due:
            o = self.order_state.get(cid)
            if o is None or o.terminal:
                del self._cancels[cid]  # closed, or long forgotten by the order state
                continue
            if self._cancels[cid][1] == limit + 1:
                self._alerts.append(self._cancel_alert(ts, cid, limit + 1))
            out.append(self._cancel(ts, o, "cancel not confirmed: retry"))
            at = ts + retry * 2 ** min(max(self._cancels[cid][1] - limit, 0), _CANCEL_BACKOFF_CAP)
            next_retry = at if next_retry is None else min(next_retry, at)
        self._next_retry = next_retry if next_retry is not None else 0
        return out

    def _cancel_alert(self, ts: int, cid: str, tries: int) -> Alert:
        m = self.market
        logger.warning(
            "%s: cancel of %s not confirmed after %d tries; still trying", self.key, cid, tries
        )
        return Alert(
            ts=ts,
            name="CancelNotConfirmed",
            severity="warning",
            scope=f"market:{m.venue}:{m.symbol}",
            message=(
                f"the venue has not confirmed the cancel of {cid} after {tries} tries; it "
                "stays pending_cancel and is retried"
            ),
            labels={"client_order_id": cid},
        )

    def _reference(self, tick: Tick) -> float:
        if self.index is not None:
            ix_ts, ix_price = self.index
            if abs(tick.ts - ix_ts) <= self.params.index_max_age_s * NS:
                return ix_price
        return tick.mid

    def _fair(self, tick: Tick, reference: float) -> float:
        fp = self.params.fair_price
        if fp == "microprice" and _finite_positive(tick.microprice):
            return tick.microprice
        if fp == "index":
            return reference
        return tick.mid

    def desired_ladder(self, ts: int) -> tuple[Ladder, float, float] | None:
        """The ladder the model wants at ``ts`` from the last tick, with the reference price
        and the reservation price; None before the first tick or during warm-up."""
        tick = self.last_tick
        vol = self.vol
        if tick is None or vol.elapsed_s < self.params.warmup_s:
            return None
        sigma = vol.sigma
        if not sigma > 0:
            return None  # no grid return and no seed yet: nothing to size the risk with
        p = self.params
        ref = self._reference(tick)
        fair = self._fair(tick, ref)
        excess = self.inventory - p.target_inventory  # base units: gamma means the same
        liquidity = self.liquidity if p.estimate_intensity else None
        mq = self.model.quote(fair, excess, sigma, self.model.time_left(ts), liquidity)
        # a fill must earn its maker fee back; a rebate lets the quote sit closer
        half_spread = max(0.0, mq.half_spread + fair * p.maker_fee_bps / 1e4)
        limit = p.position_limit
        bid_qtys, ask_qtys = inventory_sizes(self.spec, self._qtys, excess, limit, p.size_skew)
        ladder = build_ladder(
            reservation=mq.reservation,
            half_spread=half_spread,
            reference=ref,
            spec=self.spec,
            shape=self.shape,
            best_bid=tick.bid,
            best_ask=tick.ask,
            quote_bids=excess < limit,
            quote_asks=-excess < limit,
            qtys=self._qtys,
            bid_qtys=bid_qtys,
            ask_qtys=ask_qtys,
        )
        return ladder, ref, mq.reservation

    def _requote(self, ts: int, start: list[OrderIntent]) -> QuoterOutput:
        desired = self.desired_ladder(ts)
        if desired is None:
            return _out(start)
        ladder, ref, reservation = desired
        changes = self._diff(ts, ladder, ref)
        event = None
        if changes or self._last_ladder is None:
            # The ladder is published when orders change (and once at the start), not on
            # every tick that moves it inside the refresh tolerance.
            key = (
                tuple((lv.price, lv.qty) for lv in ladder.bids),
                tuple((lv.price, lv.qty) for lv in ladder.asks),
            )
            if key != self._last_ladder:
                self._last_ladder = key
                event = self._ladder_event(ts, ref, reservation, ladder.half_spread, key)
        return QuoterOutput(intents=tuple(start + changes), ladder=event)

    def _ladder_event(
        self,
        ts: int,
        ref: float,
        reservation: float,
        half_spread: float,
        levels: tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]],
    ) -> QuoteLadder:
        m = self.market
        return QuoteLadder(
            ts=ts,
            venue=m.venue,
            symbol=m.symbol,
            reference=ref,
            reservation=reservation,
            half_spread=half_spread,
            bids=tuple(QuoteLevel(price=p, qty=q) for p, q in levels[0]),
            asks=tuple(QuoteLevel(price=p, qty=q) for p, q in levels[1]),
        )

    def _diff(self, ts: int, ladder: Ladder, ref: float) -> list[OrderIntent]:
        rules = Hygiene.of(
            self.params,
            half_spread=ladder.half_spread,
            reference=ref,
            mid=self.last_tick.mid if self.last_tick is not None else ref,
            tick_size=self.spec.tick_size,
            lot_size=self.spec.lot_size,
        )
        desired = {("buy", lv.level): lv for lv in ladder.bids}
        desired.update({("sell", lv.level): lv for lv in ladder.asks})
        quoting: dict[tuple[str, int], list[LiveOrder]] = {}
        for o in self._live(cancelling=False):
            if o.cancel_ts is None:
                quoting.setdefault((o.side, o.level), []).append(o)
        cancels = self._retry_cancels(ts)
        places: list[OrderIntent] = []
        deepest = max((lvl for _, lvl in quoting), default=0)
        levels = range(max(self.shape.levels - 1, deepest) + 1)
        for side, level in ((sd, lvl) for sd in _SIDES for lvl in levels):
            slot = (side, level)
            want = desired.get(slot)
            live = quoting.get(slot, [])
            if want is None and not live:
                continue
            if want is None:
                cancels.extend(self._cancel(ts, o, "level no longer quoted") for o in live)
                continue
            if live:
                keep, extra = live[0], live[1:]
                cancels.extend(self._cancel(ts, o, "duplicate on level") for o in extra)
                if keep.state == "unknown":
                    continue  # its answer was lost: the slot is held until the venue says
                if rules.keeps(
                    side, keep.price, keep.qty, keep.placed_ts, want.price, want.qty, ts
                ):
                    continue
                cancels.append(self._cancel(ts, keep, f"refresh to {want.price}"))
            if self._blocked.get(slot, ts) > ts:
                continue
            self._blocked.pop(slot, None)
            places.append(self._place(ts, side, level, want.price, want.qty, ref))
        return cancels + places


def _out(intents: list[OrderIntent]) -> QuoterOutput:
    return QuoterOutput(intents=tuple(intents)) if intents else _NOTHING


def _slot(cid: str) -> tuple[Side, int] | None:
    """The (side, level) a quoter's client order id names; None for another id."""
    m = _SLOT.fullmatch(cid)
    if m is None:
        return None
    return ("buy" if m.group(1) == "b" else "sell", int(m.group(2)))


# --- the Bytewax operator ----------------------------------------------------------------------

QuoterEvent = Tick | IndexPrice | RiskState | ControlCommand | OrderEvent | Fill | BalanceSnapshot
Routed = tuple[str, QuoterEvent]
"""``(venue:symbol, event)``: an event on its way to one market's quoter."""
Keyed = tuple[str, Routed]
"""A routed event keyed by its market, as the stateful step takes it."""


@dataclass(frozen=True, slots=True)
class Emission:
    """What one market's quoter did on one event; only made when it did something, so a
    tick that changes nothing costs the flow no further steps."""

    intents: tuple[OrderIntent, ...] = ()
    ladder: QuoteLadder | None = None
    dead: DeadLetter | None = None
    alerts: tuple[Alert, ...] = ()
    corrections: tuple[InventoryCorrection, ...] = ()


@dataclass(frozen=True)
class QuotingOut:
    """The outputs of :func:`quoting_op`."""

    intents: Stream[OrderIntent]
    """Place / cancel / cancel_all, in the order they must be executed per market."""
    ladders: Stream[QuoteLadder]
    """Each market's desired ladder when its orders change (for the ``quotes`` topic)."""
    dead_letters: Stream[DeadLetter]
    """Events the quoter could not use, with the reason."""
    alerts: Stream[Alert]
    """``OrphanOrder`` and ``CancelNotConfirmed`` (for the ``alerts`` topic)."""
    corrections: Stream[InventoryCorrection]
    """Positions re-anchored to the venue's balances (``inventory.corrections``)."""


class MarketRouter:
    """Sends each event to the quoters of every configured market it concerns."""

    def __init__(self, config: QuotingConfig, step: str) -> None:
        self.config = config
        self.step = step
        self._markets = {m.key: m for m in config.markets}
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        by_base: dict[tuple[str, str, str], list[MarketConfig]] = {}
        for m in config.markets:
            by_base.setdefault((m.venue, m.account, base_asset(m.symbol)), []).append(m)
        # A balance re-anchors a market's position only where that market alone trades the
        # asset on its account: two markets sharing a base cannot split one balance.
        self._by_balance = {k: ms[0] for k, ms in by_base.items() if len(ms) == 1}

    def by_market(self, ev: Tick | OrderEvent | Fill) -> list[Keyed]:
        m = self._markets.get(ev.key)
        if m is None:
            return []
        if isinstance(ev, OrderEvent | Fill) and ev.account != m.account:
            return []
        return [(m.key, (m.key, ev))]

    def by_balance(self, ev: BalanceSnapshot) -> list[Keyed]:
        m = self._by_balance.get((ev.venue, ev.account, ev.asset))
        return [] if m is None else [(m.key, (m.key, ev))]

    def by_index(self, ev: IndexPrice) -> list[Keyed]:
        return [(m.key, (m.key, ev)) for m in self.config.markets if m.index_basket == ev.basket]

    def by_scope(self, ev: RiskState | ControlCommand) -> list[Keyed | DeadLetter]:
        try:
            validate_scope(ev.scope)
        except ValueError as exc:
            self._dead.inc()
            return [dead_letter(self.step, str(exc), encode(ev), ts=ev.ts, key=ev.scope.encode())]
        return [
            (m.key, (m.key, ev))
            for m in self.config.markets
            if covers(ev.scope, m.venue, m.symbol, m.account)
        ]


class QuotingLogic(StatefulLogic[Routed, Emission, QuoterSnapshot]):
    """Holds one market's :class:`Quoter`; times each tick's handling."""

    def __init__(
        self,
        config: QuotingConfig,
        step: str,
        resume: QuoterSnapshot | None,
        on_latency: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.step = step
        self.resume = resume
        self.quoter: Quoter | None = None
        self.on_latency = on_latency
        self._in = metrics.EVENTS_IN.labels(step=step)
        self._out = metrics.EVENTS_OUT.labels(step=step)
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        self._seen_returns = -1

    def _quoter(self, key: str) -> Quoter:
        if self.quoter is None:
            market = self.config.market(key)
            if market is None:
                raise KeyError(f"no configured market {key!r}")
            self.quoter = Quoter(
                market,
                self.config.params_for(market),
                id_namespace=self.config.id_namespace,
                cancel_on_start=self.config.cancel_on_start,
                orphans=self.config.orphans,
                snapshot=self.resume,
            )
        return self.quoter

    def on_item(self, value: Routed) -> tuple[Iterable[Emission], bool]:
        key, event = value
        quoter = self._quoter(key)
        self._in.inc()
        try:
            if isinstance(event, Tick):
                t0 = time.perf_counter_ns()
                out = quoter.on_tick(event)
                elapsed = time.perf_counter_ns() - t0
                metrics.TICK_TO_QUOTE_LATENCY.observe(elapsed / NS)
                if self.on_latency is not None:
                    self.on_latency(elapsed)
                if quoter.vol.returns != self._seen_returns:
                    self._seen_returns = quoter.vol.returns  # once per grid step
                    _export_estimates(quoter)
            else:
                out = quoter.on_event(event)
        except QuoterInputError as exc:
            self._dead.inc()
            dl = dead_letter(self.step, str(exc), encode(event), ts=event.ts, key=key.encode())
            return ((Emission(dead=dl),), StatefulLogic.RETAIN)
        if not out.intents and out.ladder is None and not out.alerts and not out.corrections:
            return ((), StatefulLogic.RETAIN)
        self._out.inc(len(out.intents) + (out.ladder is not None))
        emission = Emission(
            intents=out.intents,
            ladder=out.ladder,
            alerts=out.alerts,
            corrections=out.corrections,
        )
        return ((emission,), StatefulLogic.RETAIN)

    def snapshot(self) -> QuoterSnapshot:
        if self.quoter is None:
            assert self.resume is not None
            return self.resume
        return self.quoter.snapshot()


def _export_estimates(quoter: Quoter) -> None:
    key = quoter.key
    metrics.QUOTING_SIGMA.labels(market=key).set(quoter.sigma)
    fit = quoter.liquidity
    p = quoter.params
    a, kappa = (fit.a, fit.kappa) if fit is not None else (p.arrival_rate, p.kappa)
    metrics.QUOTING_INTENSITY.labels(market=key, param="a").set(a)
    metrics.QUOTING_INTENSITY.labels(market=key, param="kappa").set(kappa)


def _is_dead(x: object) -> TypeGuard[DeadLetter]:
    return isinstance(x, DeadLetter)


def _value(kv: tuple[str, Emission]) -> Emission:
    return kv[1]


def _intents(e: Emission) -> tuple[OrderIntent, ...]:
    return e.intents


def _ladders(e: Emission) -> tuple[QuoteLadder, ...]:
    return () if e.ladder is None else (e.ladder,)


def _dead(e: Emission) -> tuple[DeadLetter, ...]:
    return () if e.dead is None else (e.dead,)


def _alerts(e: Emission) -> tuple[Alert, ...]:
    return e.alerts


def _corrections(e: Emission) -> tuple[InventoryCorrection, ...]:
    return e.corrections


def _never(_: object) -> bool:
    return False


def quoting_op(
    step_id: str,
    ticks: Stream[Tick],
    index: Stream[IndexPrice],
    risk: Stream[RiskState],
    order_events: Stream[OrderEvent],
    fills: Stream[Fill],
    control: Stream[ControlCommand],
    config: QuotingConfig,
    on_latency: Callable[[int], None] | None = None,
    balances: Stream[BalanceSnapshot] | None = None,
) -> QuotingOut:
    """Quote every market of ``config``, keyed by ``venue:symbol``.

    Ticks, order events and fills go to their own market; an index price to every market
    whose ``index_basket`` it is; a risk state or control command to every market its scope
    covers (a malformed scope is a dead letter); a balance of a market's base asset to that
    market (when it is the only market trading that asset on its account), to re-anchor its
    inventory. ``balances`` is optional so callers without a balance feed keep working.
    ``on_latency`` (ns per tick, optional) lets a benchmark see each tick's handling time,
    which also goes to ``makerflow_tick_to_quote_latency_seconds``.
    """
    if balances is None:
        none: Any = op.filter(f"{step_id}_no_balances", ticks, _never)
        balances = none
    assert balances is not None
    return _quoting_op(
        step_id, ticks, index, risk, order_events, fills, control, balances, config, on_latency
    )


@operator
def _quoting_op(
    step_id: str,
    ticks: Stream[Tick],
    index: Stream[IndexPrice],
    risk: Stream[RiskState],
    order_events: Stream[OrderEvent],
    fills: Stream[Fill],
    control: Stream[ControlCommand],
    balances: Stream[BalanceSnapshot],
    config: QuotingConfig,
    on_latency: Callable[[int], None] | None,
) -> QuotingOut:
    """:func:`quoting_op` with every input given."""
    router = MarketRouter(config, step_id)
    scoped = op.merge(
        "scoped",
        op.flat_map("route_risk", risk, router.by_scope),
        op.flat_map("route_control", control, router.by_scope),
    )
    scope_split = op.branch("scope_errors", scoped, _is_dead)
    keyed: Stream[Keyed] = op.merge(
        "merge",
        op.flat_map("route_ticks", ticks, router.by_market),
        op.flat_map("route_index", index, router.by_index),
        op.flat_map("route_orders", order_events, router.by_market),
        op.flat_map("route_fills", fills, router.by_market),
        op.flat_map("route_balances", balances, router.by_balance),
        scope_split.falses,
    )

    def build(resume: QuoterSnapshot | None) -> QuotingLogic:
        return QuotingLogic(config, step_id, resume, on_latency)

    emitted = op.map("unkey", op.stateful("quote", keyed, build), _value)
    return QuotingOut(
        intents=op.flat_map("intents", emitted, _intents),
        ladders=op.flat_map("ladders", emitted, _ladders),
        dead_letters=op.merge(
            "dead_letters", scope_split.trues, op.flat_map("dead", emitted, _dead)
        ),
        alerts=op.flat_map("alerts", emitted, _alerts),
        corrections=op.flat_map("corrections", emitted, _corrections),
    )
