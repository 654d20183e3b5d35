"""Reconciliation as Bytewax operators: balances per ``account:asset`` in event-time windows
(:func:`reconcile_op`) and open orders per ``venue:account`` (:func:`reconcile_orders_op`).

The operators only split, key, route and keep state; what a window's report says is decided
by :mod:`makerflow.operators.recon_logic` and :mod:`makerflow.operators.recon_orders`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard, cast

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.merge_logic import MergingLogic, fan_out_ends
from makerflow.operators.recon_alerts import is_new_break
from makerflow.operators.recon_config import ReconConfig
from makerflow.operators.recon_inputs import Leg, check_snapshot, fill_legs, transfer_leg
from makerflow.operators.recon_logic import BalanceRecon, ReconOutput, ReconState
from makerflow.operators.recon_orders import (
    ExchangeOpenOrders,
    OpenOrderDiff,
    OpenOrderView,
    diff_alerts,
    order_view_key,
    reconcile_open_orders,
)
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    DeadLetter,
    Fill,
    OrderEvent,
    ReconReport,
    Transfer,
)

log = logging.getLogger(__name__)

NS = 1_000_000_000


@dataclass(frozen=True)
class ReconOut:
    """The outputs of :func:`reconcile_op`."""

    reports: Stream[ReconReport]
    """One report per window and version (amendments are new versions)."""
    alerts: Stream[Alert]
    """``BalanceReconciliationBreak`` for every BREAK, ``...Resolved`` when one clears."""
    dead_letters: Stream[DeadLetter]
    """Snapshots, fills and transfers that could not be booked, and events too late."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ReconWindowLogic(StatefulLogic[Leg | BalanceSnapshot, ReconOutput, ReconState]):
    """One key's :class:`BalanceRecon` inside Bytewax: items in, reports out, EOF flushes.

    With ``idle_close_s`` set, a key whose balance feed has been quiet that long on the wall
    clock moves its event time on by the quiet time (as Bytewax's ``EventClock`` does), so a
    dead balance feed still closes windows and reports them (as unconfirmed) instead of
    hiding. Fills keep arriving in that case, so only snapshots count as news.
    """

    def __init__(
        self,
        cfg: ReconConfig,
        state: ReconState | None,
        now: Callable[[], datetime],
    ) -> None:
        self.cfg = cfg
        self.recon = BalanceRecon.from_state(state, cfg) if state is not None else None
        self._now = now
        self._idle = timedelta(seconds=cfg.idle_close_s) if cfg.idle_close_s else None
        self._quiet_since: datetime | None = None

    def on_item(self, value: Leg | BalanceSnapshot) -> tuple[Iterable[ReconOutput], bool]:
        if self.recon is None:
            self.recon = BalanceRecon(value.account, value.asset, self.cfg)
        if self._idle is not None and (isinstance(value, BalanceSnapshot) or not self._quiet_since):
            self._quiet_since = self._now()
        if isinstance(value, Leg):
            return self.recon.on_leg(value), StatefulLogic.RETAIN
        return self.recon.on_snapshot(value), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[ReconOutput], bool]:
        if self.recon is None or self._quiet_since is None:
            return (), StatefulLogic.RETAIN
        base = self.recon.watermark
        if base is None:  # never a snapshot: time runs from the oldest window's start
            base = self.recon.oldest_window
        now = self._now()
        quiet_ns = int((now - self._quiet_since).total_seconds() * NS)
        self._quiet_since = now
        if base is None:
            return (), StatefulLogic.RETAIN
        return self.recon.advance(base + quiet_ns), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[ReconOutput], bool]:
        if self.recon is None:
            return (), StatefulLogic.RETAIN
        return self.recon.flush(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self._idle is None or self._quiet_since is None or self.recon is None:
            return None
        if not self.recon.pending_windows:
            return None
        return self._quiet_since + self._idle

    def snapshot(self) -> ReconState:
        assert self.recon is not None, "a key's logic exists only after its first item"
        return self.recon.state()


class _Counter:
    """Counts what leaves the operator: dead letters per step, new breaks per balance."""

    def __init__(self, step: str) -> None:
        self._dead = metrics.DEAD_LETTERS.labels(step=step)
        self._out = metrics.EVENTS_OUT.labels(step=step)

    def __call__(self, _step: str, item: ReconOutput) -> None:
        if isinstance(item, DeadLetter):
            self._dead.inc()
            return
        self._out.inc()
        if isinstance(item, Alert) and is_new_break(item):
            metrics.RECONCILIATION_BREAKS.labels(
                account=item.labels["account"], asset=item.labels["asset"]
            ).inc()
            log.warning("reconciliation break: %s", item.message)


def _is_report(x: ReconOutput) -> TypeGuard[ReconReport]:
    return isinstance(x, ReconReport)


def _is_alert(x: Alert | DeadLetter) -> TypeGuard[Alert]:
    return isinstance(x, Alert)


def _is_valid(x: Leg | BalanceSnapshot | DeadLetter) -> TypeGuard[Leg | BalanceSnapshot]:
    return not isinstance(x, DeadLetter)


def _keyed(x: Any) -> tuple[str, Any]:
    # An end marker comes already keyed (fanned out to every configured balance).
    return x if type(x) is tuple else (x.key, x)


def _merge_input(x: Leg | BalanceSnapshot) -> str:
    if isinstance(x, BalanceSnapshot):
        return "balances"
    if x.kind == "transfer":
        return "transfers"
    # Each market's fills are in order (one Kafka key); fills of several markets are not.
    return f"fills|{x.origin.key}"


def merge_inputs(markets: Sequence[str]) -> tuple[str, ...]:
    """A balance's merge inputs in a bounded replay, in tie order: transfers, then fills
    (one input per configured ``venue:symbol``, and one for any other market), then the
    snapshots (a snapshot at the same time as a fill counts it)."""
    return ("transfers", *(f"fills|{m}" for m in markets), "fills", "balances")


@operator
def reconcile_op(
    step_id: str,
    fills: Stream[Fill],
    balances: Stream[BalanceSnapshot],
    transfers: Stream[Transfer],
    config: ReconConfig,
    *,
    now: Callable[[], datetime] = _utc_now,
    bounded: bool = False,
    markets: Sequence[str] = (),
    keys: Sequence[str] = (),
) -> ReconOut:
    """Reconcile balances per ``account:asset`` in epoch-aligned event-time windows.

    A fill touches two balances (three with a fee in another asset): it is split into legs
    before keying. Every worker holds the keys routed to it, so 1 or N workers give the same
    reports. ``now`` is read only when ``config.idle_close_s`` is set.

    ``bounded`` (a replay whose inputs end): each balance's fills, transfers and snapshots
    reach its windows in event time (:class:`~makerflow.operators.merge_logic.MergingLogic`;
    ``markets``, the configured ``venue:symbol``, each get their own fills input). The
    inputs' end markers go to every balance in ``keys``; another balance waits for the end
    of the whole input (the same order, more memory).
    """
    # Dead letters name the step that refused them: this operator's own id.
    cfg = msgspec.structs.replace(config.validate(), step=step_id)
    every = tuple(keys)

    def route(name: str, fn: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
        return fan_out_ends(name, fn, lambda: every)

    legs: Stream[Leg | DeadLetter] = op.flat_map(
        "fill_legs", fills, route("fills", lambda f: _as_list(fill_legs(f, cfg)))
    )
    moves: Stream[Leg | DeadLetter] = op.flat_map(
        "transfer_legs", transfers, route("transfers", lambda t: [transfer_leg(t, cfg)])
    )
    snaps: Stream[BalanceSnapshot | DeadLetter] = op.flat_map(
        "check_snapshots", balances, route("balances", lambda s: [check_snapshot(s, cfg)])
    )
    items: Stream[Leg | BalanceSnapshot | DeadLetter] = op.merge("items", legs, moves, snaps)
    valid = op.branch("valid", items, _is_valid)
    invalid = cast(Stream[DeadLetter], valid.falses)
    keyed: Any = op.map("key", valid.trues, _keyed)
    inputs = merge_inputs(markets)

    def windows(state: Any) -> ReconWindowLogic:
        return ReconWindowLogic(cfg, state, now)

    def build(state: Any) -> Any:
        # Live: arrival order (see the README's Operations).
        return MergingLogic(lambda _v: inputs, _merge_input, windows, state, merge=bounded)

    out = op.stateful("windows", keyed, build)
    results: Stream[ReconOutput] = op.merge("results", op.key_rm("unkey", out), invalid)
    counted = op.inspect("count", results, _Counter(step_id))
    by_report = op.branch("reports", counted, _is_report)
    rest = op.branch("alerts", cast(Stream[Alert | DeadLetter], by_report.falses), _is_alert)
    return ReconOut(
        reports=by_report.trues,
        alerts=rest.trues,
        dead_letters=cast(Stream[DeadLetter], rest.falses),
    )


def _as_list(x: list[Leg] | DeadLetter) -> list[Leg | DeadLetter]:
    return [x] if isinstance(x, DeadLetter) else list(x)


# --- open orders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderReconOut:
    """The outputs of :func:`reconcile_orders_op`."""

    diffs: Stream[OpenOrderDiff]
    """One comparison per exchange listing, clean or not."""
    alerts: Stream[Alert]
    """Orphans, missing and mismatched orders."""


class _OrderViewMapper:
    def __init__(self, config: ReconConfig) -> None:
        self.grace_ns = round(config.open_order_grace_s * NS)
        self.max_view_lag_ns = round(config.open_order_max_view_lag_s * NS)
        self.own_prefix = config.own_order_prefix

    def __call__(
        self, view: OpenOrderView | None, item: OrderEvent | ExchangeOpenOrders
    ) -> tuple[OpenOrderView, OpenOrderDiff | None]:
        v = view if view is not None else OpenOrderView()
        if isinstance(item, OrderEvent):
            v.apply(item)
            return v, None
        diff = reconcile_open_orders(
            v,
            item,
            grace_ns=self.grace_ns,
            max_view_lag_ns=self.max_view_lag_ns,
            own_prefix=self.own_prefix,
        )
        if diff.unjudged:
            log.info("open orders of %s: not all judged (%s)", item.key, diff.unjudged)
        return v, diff


def _item_key(item: OrderEvent | ExchangeOpenOrders) -> str:
    return order_view_key(item) if isinstance(item, OrderEvent) else item.key


def _alerts_of(diff: OpenOrderDiff) -> list[Alert]:
    alerts = diff_alerts(diff)
    for a in alerts:
        log.warning("open-order reconciliation: %s", a.message)
    return alerts


@operator
def reconcile_orders_op(
    step_id: str,
    order_events: Stream[OrderEvent],
    exchange_orders: Stream[ExchangeOpenOrders],
    config: ReconConfig,
) -> OrderReconOut:
    """Compare our open orders (from ``order_events``) with each exchange listing, per
    ``venue:account``; findings become alerts."""
    items = op.merge("items", order_events, exchange_orders)
    keyed = op.key_on("key", items, _item_key)
    diffs = op.stateful_map("view", keyed, _OrderViewMapper(config))
    found: Stream[OpenOrderDiff] = op.filter_map("diffs", op.key_rm("unkey", diffs), lambda d: d)
    alerts = op.flat_map("alerts", found, _alerts_of)
    return OrderReconOut(diffs=found, alerts=alerts)
