"""A quoter's own orders: places and cancels, recorded in the order state; unconfirmed
cancels sent again; the live view of what is open.

Order truth: an order whose answer was lost (``unknown``) keeps its ladder slot, and nothing
replaces it until the venue says what happened. A cancel stays ``pending_cancel`` until the
venue closes it; unconfirmed cancels are sent again, ever more slowly, never forgotten.
An order with the ``mf-`` prefix that this run never placed (an orphan) is recorded in the
order state but never counted as a quote: it takes no ladder slot and is never cancelled from
here. Execution owns orphans (it sees the venue's own listing in its sweep): it cancels or
adopts them and sends the one ``OrphanOrder`` alert, so an orphan gets one cancel, not two.
"""

from __future__ import annotations

import logging

from makerflow.operators.order_records import Order
from makerflow.operators.order_state import OrderState
from makerflow.operators.quoter_ids import client_order_id, order_slot
from makerflow.operators.quoter_types import LiveOrder
from makerflow.operators.quoting_config import MarketConfig, QuotingParams
from makerflow.operators.quoting_models import NS
from makerflow.schemas.events import Alert, OrderIntent, Side
from makerflow.schemas.scopes import market_scope

logger = logging.getLogger(__name__)

_CANCEL_BACKOFF_CAP = 6
"""Past ``max_cancel_retries`` the wait between resent cancels doubles, up to 2**6 times."""


class QuoterOrders:
    """The order half of :class:`~makerflow.operators.quoter.Quoter`, which sets every
    attribute declared here."""

    market: MarketConfig
    params: QuotingParams
    session: str
    seq: int
    order_state: OrderState
    _cancels: dict[str, tuple[int, int]]
    _next_retry: int
    _live_cache: tuple[int, int, bool, list[LiveOrder]] | None
    _cancels_version: int
    _alerts: list[Alert]

    @property
    def key(self) -> str:
        return self.market.key

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
                continue  # an orphan: execution cancels or adopts it, it is no quote of ours
            slot = order_slot(o.client_order_id)
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

    def _note_unresolved(self, ts: int, unresolved: int) -> None:
        """Say (at most once a minute of event time) that places are held back."""
        last = getattr(self, "_unresolved_noted", None)
        if last is not None and ts - last < 60 * 1_000_000_000:
            return
        self._unresolved_noted = ts
        logger.warning(
            "%s: %d orders not closed by the venue (limit %d): placing nothing until it"
            " answers (is execution running?)",
            self.key,
            unresolved,
            self.params.unresolved_limit,
        )

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
            scope=market_scope(m.venue, m.symbol),
            message=(
                f"the venue has not confirmed the cancel of {cid} after {tries} tries; it "
                "stays pending_cancel and is retried"
            ),
            labels={"client_order_id": cid},
        )
