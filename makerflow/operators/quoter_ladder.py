"""A quoter's prices: from the model's reservation price and half spread to the desired
ladder, and the diff of that ladder against the live orders into place and cancel intents.

A live order within ``refresh_fraction`` of the half spread of its desired price is left
alone until ``max_quote_age_s``; one younger than ``min_quote_lifetime_s`` too, unless the
market has run into it (on the wrong side of the mid, or a half spread more aggressive than
wanted).
"""

from __future__ import annotations

import math

from makerflow.operators.intensity import Intensity, TradeIntensity
from makerflow.operators.inventory import Inventory
from makerflow.operators.ladder import (
    Ladder,
    LadderShape,
    MarketSpec,
    build_ladder,
    inventory_sizes,
)
from makerflow.operators.quote_hygiene import Hygiene
from makerflow.operators.quoter_orders import QuoterOrders
from makerflow.operators.quoter_types import (
    LiveOrder,
    QuoterOutput,
    finite_positive,
    output_of,
)
from makerflow.operators.quoting_models import NS, QuotingModel
from makerflow.operators.volatility import GridVolatility
from makerflow.schemas.events import (
    OrderIntent,
    QuoteLadder,
    QuoteLevel,
    Side,
    Tick,
)

_SIDES: tuple[Side, Side] = ("buy", "sell")


class QuoterLadder(QuoterOrders):
    """The pricing half of :class:`~makerflow.operators.quoter.Quoter`, which sets every
    attribute declared here."""

    spec: MarketSpec
    shape: LadderShape
    model: QuotingModel
    vol: GridVolatility
    intensity: TradeIntensity
    last_tick: Tick | None
    index: tuple[int, float] | None
    _inventory: Inventory
    _qtys: tuple[float, ...]
    _blocked: dict[tuple[str, int], int]
    _last_ladder: tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]] | None
    # The last ladder built and every input it was built from. build_ladder and
    # inventory_sizes are pure functions of these (spec, shape and the sizes are frozen), so
    # equal inputs give an equal ladder; on the recorded BTCUSDT day ~96 % of ticks repeat
    # the previous tick's inputs (the fair price and sigma move less often than the book).
    _ladder_memo: tuple[tuple[object, ...], Ladder] | None = None
    # The inputs of the last diff that changed nothing, and until when it stays so.
    _quiet_diff: tuple[tuple[object, ...], float] | None = None

    @property
    def inventory(self) -> float:
        """The base-asset position: fills once each, net of base fees, venue-anchored."""
        return self._inventory.position

    @property
    def liquidity(self) -> Intensity | None:
        """The arrival intensity fitted from trades, None while the fallback applies."""
        if not self.params.estimate_intensity or self.last_tick is None:
            return None
        return self.intensity.estimate(self.last_tick.ts)

    def _reference(self, tick: Tick) -> float:
        if self.index is not None:
            ix_ts, ix_price = self.index
            if abs(tick.ts - ix_ts) <= self.params.index_max_age_s * NS:
                return ix_price
        return tick.mid

    def _fair(self, tick: Tick, reference: float) -> float:
        fp = self.params.fair_price
        if fp == "microprice" and finite_positive(tick.microprice):
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
        # Base units (gamma means the same whatever the order size), and what the venue holds
        # already: a trade its order update reported before its fill arrived counts now, or
        # the freed slot would be re-quoted past the position limit.
        position = self.inventory + self.order_state.unbooked(self.key)
        excess = position - p.target_inventory
        liquidity = self.liquidity if p.estimate_intensity else None
        mq = self.model.quote(fair, excess, sigma, self.model.time_left(ts), liquidity)
        # a fill must earn its maker fee back; a rebate lets the quote sit closer
        half_spread = max(0.0, mq.half_spread + fair * p.maker_fee_bps / 1e4)
        limit = p.position_limit
        key = (
            mq.reservation,
            half_spread,
            ref,
            self.spec,
            self.shape,
            tick.bid,
            tick.ask,
            excess,
            limit,
            p.size_skew,
            self._qtys,
        )
        memo = self._ladder_memo
        if memo is not None and memo[0] == key:
            return memo[1], ref, mq.reservation
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
        self._ladder_memo = (key, ladder)
        return ladder, ref, mq.reservation

    def _requote(self, ts: int, start: list[OrderIntent]) -> QuoterOutput:
        desired = self.desired_ladder(ts)
        if desired is None:
            return output_of(start)
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
        mid = self.last_tick.mid if self.last_tick is not None else ref
        # Everything the diff reads besides ``ts``. A diff that changed nothing stays empty
        # for the same inputs until the first time a kept order's age or a blocked slot's
        # timer runs out (every use of ``ts`` below is a "ts < threshold" test), so such
        # ticks (most of them) skip it. Pending cancels retry on a timer: never skipped then.
        st = self.order_state
        inputs = (
            ladder,
            ref,
            mid,
            self.params,
            self.spec,
            self.shape,
            st,  # by identity (a restore builds a new order state, its version anew)
            st.version,
            self._cancels_version,
            tuple(self._blocked.items()),
        )
        quiet = self._quiet_diff
        if quiet is not None and ts < quiet[1] and not self._cancels and quiet[0] == inputs:
            return []
        self._quiet_diff = None
        rules = Hygiene.of(
            self.params,
            half_spread=ladder.half_spread,
            reference=ref,
            mid=mid,
            tick_size=self.spec.tick_size,
            lot_size=self.spec.lot_size,
        )
        until = math.inf
        desired = {("buy", lv.level): lv for lv in ladder.bids}
        desired.update({("sell", lv.level): lv for lv in ladder.asks})
        quoting: dict[tuple[str, int], list[LiveOrder]] = {}
        for o in self._live(cancelling=False):
            if o.cancel_ts is None:
                quoting.setdefault((o.side, o.level), []).append(o)
        cancels = self._retry_cancels(ts)
        places: list[OrderIntent] = []
        unresolved: int | None = None  # counted once, and only when a place is due
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
                    kept = rules.kept_until(
                        keep.price, keep.qty, keep.placed_ts, want.price, want.qty
                    )
                    until = min(until, kept)
                    continue
                cancels.append(self._cancel(ts, keep, f"refresh to {want.price}"))
            blocked = self._blocked.get(slot, ts)
            if blocked > ts:
                until = min(until, blocked)
                continue
            self._blocked.pop(slot, None)
            if unresolved is None:
                unresolved = len(self.order_state.open_orders(self.key))
            if unresolved + len(places) >= self.params.unresolved_limit:
                self._note_unresolved(ts, unresolved)
                continue  # nothing answers our orders: cancels only until it does
            places.append(self._place(ts, side, level, want.price, want.qty, ref))
        if not cancels and not places and not self._cancels:
            self._quiet_diff = (inputs, until)
        return cancels + places
