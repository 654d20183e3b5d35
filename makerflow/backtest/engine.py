"""One quoted market's backtest: the pipeline's pure logic and the simulated venue in one
event-time loop.

Why one loop. A Bytewax dataflow has no cycles, and a live deployment closes the loop
through the exchange: intents leave by the exchange sink, and acks and fills come back on the
private stream. A loopback channel inside one dataflow would close it too, but what comes
back through it meets the market data in arrival order, which changes from run to run.
Here, per quoted market (the Bytewax key), :class:`MarketEngine` runs the very classes the
live operators run, in the order event time says:

* :class:`~makerflow.operators.ticks.MarketTicks` per market (ours and the index's other
  venues) for ticks, bars, data quality, and the book the venue matches against;
* :class:`~makerflow.operators.index.BasketIndex` for the quoted market's basket (other
  venues' ticks and DEX prices reach this key too, see :mod:`makerflow.backtest.flow`);
* :class:`~makerflow.operators.quoting.Quoter`, fed through ``on_tick``, ``on_index``,
  ``on_risk``, ``on_order_event`` and ``on_fill`` as the quoting operator feeds it;
* risk's market stage (:class:`~makerflow.operators.risk_windows.MarketRisk`, the market
  limits, :class:`~makerflow.operators.risk_limits.BreachTracker`) and the market scope's
  :class:`~makerflow.operators.kill_switch.ScopeMachine` (kill switch and cancel-alls),
  through :class:`~makerflow.backtest.risk.RiskStage`;
* reconciliation's :class:`~makerflow.operators.recon_logic.BalanceRecon` per asset;
* the checks live execution runs before the exchange, on the same pure code and the same
  ``[execution]`` tables: the risk gate (:class:`~makerflow.operators.risk_gate.RiskGate`,
  fed every RiskState this loop's risk publishes or acts on) and then the sink's fat-finger
  guards (:func:`~makerflow.operators.guards.check_intent`, its open-order count from the
  one :class:`~makerflow.operators.order_state.OrderState`). A refused intent never reaches
  the venue; its rejected OrderEvent (the reason text live execution writes) is delivered
  like any venue report;
* the :class:`~makerflow.backtest.venue.SimVenue`.

The venue's reports are scheduled on a heap ordered by ``(time, sequence)`` and delivered,
once their latency has passed, as the same ``OrderEvent``, ``Fill`` and ``BalanceSnapshot``
objects the private stream brings live, through the same ``on_*`` methods. The loop's clock is
the data's merge time (:mod:`makerflow.backtest.merge`); nothing reads a wall clock.

Control commands (``--control`` files, the ``control`` topic) reach the quoter's
``on_control`` and the machine of their scope, as they reach the quoting and risk services.

What differs from live, on purpose: the risk limits above one market (asset exposure,
account and global PnL, index-oracle deviation) are not judged, since each market's loop is
alone on its key (a command to a wider scope still halts and resumes it); staleness on the
wall clock has no meaning in a replay (the gate's own staleness is judged in event time, as
live), and the gate's ``hold_ms`` wait for risk's first word is a wall-clock liveness aid
with nothing to wait for here: risk is heard before the quoter in the same loop; the sink's
intent time-to-live (wall clock against event time) is not applied.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from makerflow.backtest.risk import RiskStage
from makerflow.backtest.settings import BacktestConfig
from makerflow.backtest.venue import Arrival, Report, SimVenue
from makerflow.operators.guards import check_intent, guard_rejected
from makerflow.operators.index import BasketIndex, BasketRouter
from makerflow.operators.kill_switch import Transition
from makerflow.operators.order_state import OrderState
from makerflow.operators.quoter import Quoter
from makerflow.operators.quoter_types import QuoterInputError, QuoterOutput
from makerflow.operators.recon_logic import BalanceRecon, check_snapshot, fill_legs
from makerflow.operators.risk_gate import RiskGate, rejected
from makerflow.operators.risk_scopes import transition_cancels
from makerflow.operators.ticks import MarketTicks
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    Bar,
    BookDelta,
    BookSnapshot,
    ControlCommand,
    DataQuality,
    DeadLetter,
    DexPrice,
    Fill,
    IndexPrice,
    OraclePrice,
    OrderEvent,
    OrderIntent,
    Tick,
    Trade,
    market_key,
)

logger = logging.getLogger(__name__)

Output = tuple[str, int, Any]
"""``(stream name, engine time, event)``: one line of ``<out>/<name>.jsonl``."""

STREAMS = (
    "ticks",
    "bars",
    "quality",
    "index",
    "risk_states",
    "alerts",
    "ladders",
    "intents",
    "order_events",
    "fills",
    "balances",
    "recon_reports",
    "dead_letters",
)
"""Every stream a backtest writes, named as the demo names its files."""

_ARRIVE = 0
_REPORT = 1
_DRAIN_LIMIT = 10_000_000


class MarketEngine:
    """The backtest of one quoted market (``key``), fed the merged input of its key."""

    def __init__(
        self,
        key: str,
        config: BacktestConfig,
        *,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        market = config.quoting.market(key)
        if market is None:
            raise KeyError(f"{key} is not a quoted market of the [quoting] configuration")
        self.key = key
        self.config = config
        self.market = market
        self.owns = owns or (lambda name: True)
        """Whether this engine writes a market's ticks or a basket's index prices (each is
        written by exactly one engine)."""
        self.quoter = Quoter(
            market,
            config.quoting.params_for(market),
            id_namespace=config.quoting.id_namespace,
            cancel_on_start=config.quoting.cancel_on_start,
        )
        venue = config.venue
        if venue.maker_fee is None:
            fee = self.quoter.params.maker_fee_bps / 1e4
            venue = msgspec.structs.replace(venue, maker_fee=fee)
        if venue.taker_fee is None and market.taker_fee_bps:
            # The registry's taker fee (``[[markets]] taker_fee_bps``) when it states one.
            venue = msgspec.structs.replace(venue, taker_fee=market.taker_fee_bps / 1e4)
        self.venue = SimVenue(market.venue, market.symbol, market.account, self.quoter.spec, venue)
        self.ticks: dict[str, MarketTicks] = {}
        self.router = BasketRouter(config.index)
        risk_market = config.risk.market(key)
        baskets = {market.index_basket, risk_market.index_basket if risk_market else None}
        self.risk_basket = risk_market.index_basket if risk_market else None
        self.baskets = {
            b.name: BasketIndex(b, config.index) for b in config.index.baskets if b.name in baskets
        }
        self.risk = RiskStage(market.venue, market.symbol, market.account, config.risk)
        self.recon: dict[str, BalanceRecon] = {}
        checks = config.execution
        self.gate = RiskGate(checks.gate)
        self.orders = OrderState(prefix=checks.sink.client_id_prefix)
        """Execution's order state: what the open-order guard counts."""
        self.heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.now = -1
        self.started = False
        self.events = 0
        self.out: list[Output] = []

    # --- input ----------------------------------------------------------------------------

    def feed(self, mts: int, ev: Any) -> None:
        """One input event at merge time ``mts`` (never decreasing)."""
        self._run_until(mts)
        if mts > self.now:
            self.now = mts
        if not self.started:
            self.started = True
            self._schedule_reports(self.venue.initial_balances(self.now))
        self.events += 1
        if isinstance(ev, BookSnapshot | BookDelta | Trade):
            self._market_data(ev)
        elif isinstance(ev, DexPrice | OraclePrice):
            self._index_input(ev)
        elif isinstance(ev, ControlCommand):
            self._control(ev)
        elif isinstance(ev, DeadLetter):
            self._emit("dead_letters", ev)

    def finish(self) -> list[Output]:
        """End of input: deliver what is still on its way, close bars and windows."""
        self._run_until(None)
        for name, mt in sorted(self.ticks.items()):
            if self.owns(name):
                for x in mt.flush():
                    self._emit_md(x)
        for asset in sorted(self.recon):
            self._recon_out(self.recon[asset].flush())
        return self.take()

    def take(self) -> list[Output]:
        out, self.out = self.out, []
        return out

    # --- the loop -------------------------------------------------------------------------

    def _push(self, ts: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (ts, self._seq, kind, payload))

    def _run_until(self, until: int | None) -> None:
        """Deliver everything scheduled at or before ``until`` (everything with None)."""
        heap = self.heap
        n = 0
        while heap and (until is None or heap[0][0] <= until):
            ts, _, kind, payload = heapq.heappop(heap)
            if ts > self.now:
                self.now = ts
            if kind == _ARRIVE:
                book = self._ticks(self.market.venue, self.market.symbol).book
                self._schedule_reports(self.venue.arrive(payload, book))
            else:
                self._deliver(payload)
            n += 1
            if n > _DRAIN_LIMIT:
                raise RuntimeError(f"{self.key}: the venue loop does not settle")

    def _schedule_reports(self, reports: list[Report]) -> None:
        for r in reports:
            self._push(max(r.deliver_ts, self.now), _REPORT, r.event)

    def submit(self, intents: Iterable[OrderIntent]) -> None:
        """Intents (one batch, in order) on their way to the venue: through the risk gate
        and the sink's guards first, as live execution takes them."""
        # As live execution: the gate, then the sink's guards, whose open-order count is
        # the order state's before this batch plus the places admitted in it.
        n_open = len(self.orders.open_orders(self.key))
        admitted = 0
        guards = self.config.execution.guards
        for intent in intents:
            self._emit("intents", intent)
            refusal = self.gate.check(intent)
            if refusal is not None:
                self._refuse(rejected(intent, refusal))
                continue
            self.orders.on_intent(intent)
            problem = check_intent(intent, guards, n_open + admitted)
            if problem is not None:
                self._refuse(guard_rejected(intent, problem))
                continue
            if intent.action == "place":
                admitted += 1
            arrival: Arrival = self.venue.send(self.now, intent)
            self._push(arrival.ts, _ARRIVE, arrival)

    def _refuse(self, ev: OrderEvent) -> None:
        """A refusal comes back as execution's rejected OrderEvent, through the heap: the
        quoter hears it after its own output is handled, as it would from the topic."""
        self._push(self.now, _REPORT, ev)

    # --- market data ------------------------------------------------------------------------

    def _ticks(self, venue: str, symbol: str) -> MarketTicks:
        name = market_key(venue, symbol)
        mt = self.ticks.get(name)
        if mt is None:
            mt = self.ticks[name] = MarketTicks(venue, symbol, self.config.ticks)
        return mt

    def _market_data(self, ev: BookSnapshot | BookDelta | Trade) -> None:
        mt = self._ticks(ev.venue, ev.symbol)
        produced: list[Any] = []
        mt.feed(ev, produced)
        name = ev.key
        mine = name == self.key
        if mine:
            if isinstance(ev, Trade):
                self._schedule_reports(self.venue.on_trade(ev, self.now))
            else:
                self._schedule_reports(self.venue.on_book(self.now, mt.book))
        owned = self.owns(name)
        for x in produced:
            if owned:
                self._emit_md(x)
            if type(x) is Tick:
                self._index_input(x)
                if mine:
                    self._on_tick(x)
            elif mine and isinstance(x, DataQuality):
                self._risk(self.risk.on_quality(x))

    def _emit_md(self, x: Any) -> None:
        if type(x) is Tick:
            self._emit("ticks", x)
        elif isinstance(x, Bar):
            self._emit("bars", x)
        elif isinstance(x, DataQuality):
            self._emit("quality", x)
        else:
            self._emit("dead_letters", x)

    def _index_input(self, ev: Tick | DexPrice | OraclePrice) -> None:
        if isinstance(ev, OraclePrice):
            names: tuple[str, ...] = tuple(self.baskets)
        else:
            names = self.router.baskets_for(ev)
        for name in names:
            index = self.baskets.get(name)
            if index is None:
                continue
            price = index.update(ev)
            if price is None:
                continue
            if self.owns(name):
                self._emit("index", price)
            self._on_index(price)

    def _on_index(self, price: IndexPrice) -> None:
        if price.basket == self.risk_basket:
            self._risk(self.risk.on_index(price.ts, price.price))
        if price.basket == self.market.index_basket:
            self._quote(self.quoter.on_index, price)

    def _on_tick(self, tick: Tick) -> None:
        self._risk(self.risk.on_tick(tick))
        self._quote(self.quoter.on_tick, tick)

    # --- private stream -------------------------------------------------------------------

    def _deliver(self, ev: OrderEvent | Fill | BalanceSnapshot) -> None:
        if isinstance(ev, OrderEvent):
            self._emit("order_events", ev)
            self.orders.on_order_event(ev)
            self._risk(self.risk.on_order_event(ev))
            self._quote(self.quoter.on_order_event, ev)
        elif isinstance(ev, Fill):
            self._emit("fills", ev)
            self.orders.on_fill(ev)
            self._risk(self.risk.on_fill(ev))
            self._quote(self.quoter.on_fill, ev)
            legs = fill_legs(ev, self.config.recon)
            if isinstance(legs, DeadLetter):
                self._emit("dead_letters", legs)
            else:
                for leg in legs:
                    self._recon_out(self._recon(leg.asset).on_leg(leg))
        else:
            self._emit("balances", ev)
            snap = check_snapshot(ev, self.config.recon)
            if isinstance(snap, DeadLetter):
                self._emit("dead_letters", snap)
            else:
                self._recon_out(self._recon(snap.asset).on_snapshot(snap))

    def _recon(self, asset: str) -> BalanceRecon:
        r = self.recon.get(asset)
        if r is None:
            r = self.recon[asset] = BalanceRecon(self.market.account, asset, self.config.recon)
        return r

    def _recon_out(self, items: Iterable[Any]) -> None:
        for x in items:
            if isinstance(x, Alert):
                self._emit("alerts", x)
            elif isinstance(x, DeadLetter):
                self._emit("dead_letters", x)
            else:
                self._emit("recon_reports", x)

    # --- quoting and risk -------------------------------------------------------------------

    def _quote(self, method: Any, ev: Any) -> None:
        try:
            out: QuoterOutput = method(ev)
        except QuoterInputError as exc:
            dl = dead_letter("backtest.quoting", str(exc), encode(ev), ts=ev.ts)
            self._emit("dead_letters", dl)
            return
        if out.ladder is not None:
            self._emit("ladders", out.ladder)
        if out.intents:
            self.submit(out.intents)

    def _risk(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self._transition(t, write=self.owns(t.scope))

    def _control(self, cmd: ControlCommand) -> None:
        """An operator's command, as the risk service and the quoter take it live: the
        scope's machine halts or resumes (its RiskState reaches the quoter), ``set_params``
        changes the market's limits and the quoter's parameters."""
        transitions, alerts, problem = self.risk.on_command(cmd)
        if problem:
            dl = dead_letter("backtest.control", problem, encode(cmd), ts=cmd.ts)
            self._emit("dead_letters", dl)
            return
        for alert in alerts:
            self._emit("alerts", alert)
        self._risk(transitions)
        self._quote(self.quoter.on_control, cmd)

    def _transition(self, t: Transition, *, write: bool = True) -> None:
        """Publish a scope's new state (when this engine writes that scope: a scope wider
        than one market is written by one engine, the others only act on it), cancel this
        market's orders when it says so, and tell the quoter."""
        state = t.risk_state()
        self.gate.on_state(state)
        if write:
            self._emit("risk_states", state)
            alert = t.alert_event()
            if alert is not None:
                self._emit("alerts", alert)
        if t.cancel_all:
            intents = transition_cancels(self.config.risk, t)
            self.submit(i for i in intents if i.key == self.key)
        self._quote(self.quoter.on_risk, state)

    def _emit(self, name: str, ev: Any) -> None:
        self.out.append((name, self.now, ev))


def is_market_data(ev: Any) -> bool:
    return isinstance(ev, BookSnapshot | BookDelta | Trade)


__all__ = ["STREAMS", "MarketEngine", "Output", "is_market_data"]
