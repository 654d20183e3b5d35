"""The stateful stages of :func:`~makerflow.operators.risk.risk_op` below the per-scope one:
per market, per asset, per index basket and per account / ``global``. Each holds the pure
logic of its key, keeps its state and updates the Prometheus metrics; the names stay private
to the risk operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bytewax.operators import StatefulLogic

from makerflow import metrics
from makerflow.operators.kill_switch import command_problem
from makerflow.operators.risk_buckets import NS_PER_S, WindowSpec
from makerflow.operators.risk_exposure import ExposureBook, Leg
from makerflow.operators.risk_limits import (
    MARKET_KINDS,
    AssetLimits,
    BreachTracker,
    MarketLimits,
    PortfolioLimits,
    RiskConfig,
    apply_params,
    check_deviation,
    check_exposure,
    check_market,
    check_portfolio,
    check_staleness,
)
from makerflow.operators.risk_portfolio import MarketSummary, Portfolio, oracle_deviation_bps
from makerflow.operators.risk_scopes import Beat, Pause, signal
from makerflow.operators.risk_windows import MarketRisk
from makerflow.operators.staleness import Heartbeat, StalenessMonitor
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import (
    Alert,
    BalanceSnapshot,
    ControlCommand,
    DataQuality,
    DeadLetter,
    Fill,
    IndexPrice,
    OrderEvent,
    Tick,
    split_market_key,
)
from makerflow.schemas.scopes import (
    GLOBAL,
    account_scope,
    asset_scope,
    market_key_scope,
    scopes_of_market,
    symbol_assets,
    validate_scope,
)


@dataclass(frozen=True)
class IndexMark:
    """An index price to mark a market's PnL to."""

    ts: int
    price: float | None


def dead_event(step: str, reason: str, ev: Any) -> DeadLetter:
    metrics.DEAD_LETTERS.labels(step=step).inc()
    return dead_letter(step, reason, encode(ev), ts=getattr(ev, "ts", 0))


def params_alert(scope: str, cmd: ControlCommand, limits: Any) -> Alert:
    who = cmd.issued_by or "operator"
    return Alert(
        ts=cmd.ts,
        name="RiskLimitsChanged",
        severity="info",
        scope=scope,
        message=f"{who} set {dict(cmd.params)} on {scope}; limits now {limits}",
    )


# --- input checks -------------------------------------------------------------------------------


def check_symbol(step: str) -> Any:
    """Dead-letters an event whose symbol is not BASE/QUOTE."""

    def check(ev: Any) -> Any:
        try:
            symbol_assets(ev.symbol)
        except ValueError as exc:
            return dead_event(step, str(exc), ev)
        return ev

    return check


def check_command(step: str) -> Any:
    """Dead-letters a command with a bad scope, a bad shape or a bad market."""

    def check(cmd: ControlCommand) -> Any:
        try:
            validate_scope(cmd.scope)
        except ValueError as exc:
            return dead_event(step, str(exc), cmd)
        problem = command_problem(cmd)
        if problem is not None:
            return dead_event(step, problem, cmd)
        if cmd.command == "set_params" and cmd.scope.startswith("market:"):
            try:
                symbol_assets(cmd.scope.split(":", 2)[2])
            except ValueError as exc:
                return dead_event(step, str(exc), cmd)
        return cmd

    return check


# --- per market ---------------------------------------------------------------------------------

MarketIn = Tick | OrderEvent | Fill | IndexMark | Heartbeat | ControlCommand | DataQuality

_BOOK_INVALID = frozenset({"gap", "crossed"})
"""Data-quality findings after which the market's book cannot be trusted until new ticks."""


class _MarketLogic(StatefulLogic[MarketIn, Any, tuple[Any, ...]]):
    def __init__(
        self, step: str, key: str, config: RiskConfig, spec: WindowSpec, resume: Any
    ) -> None:
        venue, symbol = split_market_key(key)
        m = config.market(key)
        self.step = step
        self.account = m.account if m is not None else "main"
        self.scope = market_key_scope(key)
        self.risk = MarketRisk(key, symbol, spec)
        self.limits: MarketLimits = config.market_limits(key)
        self.tracker = BreachTracker()
        self.stale = StalenessMonitor()
        self.summarized_bucket: int | None = None
        self.scopes = scopes_of_market(venue, symbol, self.account)
        self.beat_ns = config.state_heartbeat_ms * 1_000_000
        self.beat: int | None = None
        self.stale_why = ""
        self.book_why = ""
        self.book_bad_ts = 0
        self.last_now: int | None = None
        if resume is not None:
            snap, active, stale, limits, bucket, beat = resume
            self.risk.restore(snap)
            self.tracker.active = active
            self.stale.newest_ts, self.stale.silent_since = stale
            self.limits, self.summarized_bucket = limits, bucket
            self.beat, (self.stale_why, self.book_why, self.book_bad_ts), self.last_now = beat
        self._g = (
            metrics.RISK_REALIZED_VOLATILITY.labels(market=key),
            metrics.RISK_LARGEST_MOVE.labels(market=key),
            metrics.OPEN_ORDER_NOTIONAL.labels(market=key),
            metrics.ORDER_REJECT_RATIO.labels(market=key),
            metrics.ORDER_CANCEL_RATIO.labels(market=key),
            metrics.PNL.labels(scope=self.scope),
            metrics.DRAWDOWN.labels(scope=self.scope),
        )
        self._late = metrics.LATE_EVENTS.labels(step=step)

    def on_item(self, value: MarketIn) -> tuple[Iterable[Any], bool]:
        out: list[Any] = []
        summarize = False
        if not isinstance(value, Heartbeat | ControlCommand | DataQuality):
            out.extend(self._beats(value.ts))
        if isinstance(value, DataQuality):
            if value.kind in _BOOK_INVALID and not self.book_why:
                was = self._paused
                self.book_why = f"book invalid ({value.kind}): {value.detail}"
                self.book_bad_ts = value.ts
                out.extend(self._pause_change(was, value.ts))
            return out, StatefulLogic.RETAIN
        if isinstance(value, Tick):
            self.stale.on_data(value.ts)
            was = self._paused
            if self.stale_why and self._fresh(value.ts):
                self.stale_why = ""
            if self.book_why and value.ts > self.book_bad_ts and value.bid < value.ask:
                self.book_why = ""  # a good top of book after the finding: the book is back
            out.extend(self._pause_change(was, value.ts))
            if not self.risk.on_tick(value):
                self._late.inc()
            bucket = self.risk.spec.bucket_of(value.ts)
            if self.summarized_bucket is None or bucket > self.summarized_bucket:
                summarize = True
        elif isinstance(value, OrderEvent):
            if not self.risk.on_order_event(value):
                self._late.inc()
            summarize = True
        elif isinstance(value, Fill):
            summarize = self.risk.on_fill(value)  # False for a fill delivered again
        elif isinstance(value, IndexMark):
            self.risk.on_index(value.price)
        elif isinstance(value, Heartbeat):
            self.risk.start(value.now)
            self.last_now = value.now
            age = self.stale.age_ns(value)
            metrics.MARKET_DATA_AGE.labels(market=self.risk.market).set(age / NS_PER_S)
            out.extend(
                signal(
                    self.tracker,
                    self.scope,
                    value.now,
                    check_staleness(age, self.limits.max_data_age_ms),
                    ("stale",),
                    {"data_age_s": age / NS_PER_S},
                )
            )
            pause = self.limits.pause_data_age_ms
            if not self.stale_why and pause is not None and age > pause * 1_000_000:
                was = self._paused
                self.stale_why = (
                    f"market data {age / NS_PER_S:.3g} s old > pause limit {pause / 1e3:g} s"
                )
                out.extend(self._pause_change(was, value.now))
            return out, StatefulLogic.RETAIN
        else:
            try:
                self.limits = apply_params(self.limits, value.params)
            except ValueError as exc:
                return [dead_event(self.step, str(exc), value)], StatefulLogic.RETAIN
            out.append(params_alert(self.scope, value, self.limits))
        m = self.risk.measures()
        g = self._g
        g[0].set(m.realized_vol_bps)
        g[1].set(m.largest_move_bps)
        g[2].set(m.open_notional)
        g[3].set(m.reject_rate)
        g[4].set(m.cancel_rate)
        g[5].set(m.pnl)
        g[6].set(m.drawdown)
        out.extend(
            signal(
                self.tracker,
                self.scope,
                m.ts,
                check_market(m, self.limits),
                MARKET_KINDS,
                m.as_metrics(),
            )
        )
        if summarize:
            self.summarized_bucket = self.risk.spec.bucket_of(m.ts)
            out.append(MarketSummary(self.risk.market, self.account, m.ts, m.pnl, m.open_notional))
        return out, StatefulLogic.RETAIN

    def _beats(self, ts: int) -> list[Beat]:
        """Beats for every scope of this market at the first event of each period."""
        period = ts // self.beat_ns
        if self.beat is not None and period <= self.beat:
            return []
        self.beat = period
        return [Beat(scope, ts) for scope in self.scopes]

    @property
    def _paused(self) -> bool:
        return bool(self.stale_why or self.book_why)

    def _pause_change(self, was: bool, ts: int) -> list[Pause]:
        """A Pause when the market went from good data to bad, or back."""
        if was == self._paused:
            return []
        reasons = tuple(r for r in (self.stale_why, self.book_why) if r)
        return [Pause(self.scope, ts, reasons)]

    def _fresh(self, ts: int) -> bool:
        """Whether data of event time ``ts`` ends a pause: younger than half the pause limit
        at the last wall-clock reading, so a feed hovering at the limit does not flap (no
        reading yet: fresh, there is nothing to be stale against)."""
        pause = self.limits.pause_data_age_ms
        if pause is None or self.last_now is None:
            return True
        return self.last_now - ts <= pause * 500_000

    def snapshot(self) -> tuple[Any, ...]:
        return (
            self.risk.snapshot(),
            self.tracker.active,
            self.stale.snapshot(),
            self.limits,
            self.summarized_bucket,
            (self.beat, (self.stale_why, self.book_why, self.book_bad_ts), self.last_now),
        )


# --- per asset ----------------------------------------------------------------------------------


class _ExposureLogic(StatefulLogic[Leg | BalanceSnapshot | ControlCommand, Any, tuple[Any, ...]]):
    def __init__(self, step: str, asset: str, config: RiskConfig, resume: Any) -> None:
        self.step = step
        self.asset = asset
        self.scope = asset_scope(asset)
        self.limits: AssetLimits = config.assets.get(asset, AssetLimits())
        self.books: dict[str, ExposureBook] = {}
        self.tracker = BreachTracker()
        if resume is not None:
            books, active, self.limits = resume
            self.books = {a: ExposureBook.restore(b) for a, b in books}
            self.tracker.active = active

    def on_item(self, value: Leg | BalanceSnapshot | ControlCommand) -> tuple[Iterable[Any], bool]:
        if isinstance(value, ControlCommand):
            try:
                self.limits = apply_params(self.limits, value.params)
            except ValueError as exc:
                return [dead_event(self.step, str(exc), value)], StatefulLogic.RETAIN
            out: list[Any] = [params_alert(self.scope, value, self.limits)]
            for account, book in self.books.items():
                out.extend(self._judge(account, book.exposure, value.ts))
            return out, StatefulLogic.RETAIN
        book = self.books.setdefault(value.account, ExposureBook())
        if isinstance(value, Leg):
            exposure = book.on_leg(value.ts, value.amount, value.key)
        else:
            exposure = book.on_balance(value.ts, value.total)
        return self._judge(value.account, exposure, value.ts), StatefulLogic.RETAIN

    def _judge(self, account: str, exposure: float, ts: int) -> list[Any]:
        metrics.EXPOSURE.labels(account=account, asset=self.asset).set(exposure)
        judged = (f"exposure_long:{account}", f"exposure_short:{account}")
        return list(
            signal(
                self.tracker,
                self.scope,
                ts,
                check_exposure(account, self.asset, exposure, self.limits),
                judged,
                {f"exposure:{account}": exposure},
            )
        )

    def snapshot(self) -> tuple[Any, ...]:
        books = tuple((a, b.snapshot()) for a, b in self.books.items())
        return books, self.tracker.active, self.limits


# --- per basket --------------------------------------------------------------------------------


def _index_mapper(config: RiskConfig) -> Any:
    def judge(active: frozenset[str] | None, ip: IndexPrice) -> tuple[frozenset[str], list[Any]]:
        tracker = BreachTracker(active or frozenset())
        dev = oracle_deviation_bps(ip)
        lim = config.basket_limits(ip.basket)
        if dev is not None:
            metrics.INDEX_ORACLE_DEVIATION.labels(basket=ip.basket).set(dev)
        out: list[Any] = signal(
            tracker,
            lim.halt_scope,
            ip.ts,
            check_deviation(ip.basket, dev, lim),
            (f"oracle_deviation:{ip.basket}",),
            {"oracle_deviation_bps": dev or 0.0},
        )
        return tracker.active, out

    return judge


class _IndexLogic(StatefulLogic[IndexPrice, Any, frozenset[str]]):
    """One basket's oracle-deviation breaches (the state: the breaches that hold)."""

    def __init__(self, config: RiskConfig, resume: frozenset[str] | None) -> None:
        self.judge = _index_mapper(config)
        self.active = resume

    def on_item(self, value: IndexPrice) -> tuple[Iterable[Any], bool]:
        self.active, out = self.judge(self.active, value)
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> frozenset[str]:
        return self.active or frozenset()


# --- per account / global -------------------------------------------------------------------


class _PortfolioLogic(StatefulLogic[MarketSummary | ControlCommand, Any, tuple[Any, ...]]):
    def __init__(self, step: str, scope: str, config: RiskConfig, resume: Any) -> None:
        self.step = step
        self.scope = scope
        self.limits: PortfolioLimits = config.portfolio_limits(scope)
        self.book = Portfolio()
        self.tracker = BreachTracker()
        if resume is not None:
            (latest, peak), active, self.limits = resume
            self.book = Portfolio(dict(latest), peak)
            self.tracker.active = active
        self._pnl = metrics.PNL.labels(scope=scope)
        self._dd = metrics.DRAWDOWN.labels(scope=scope)

    def on_item(self, value: MarketSummary | ControlCommand) -> tuple[Iterable[Any], bool]:
        out: list[Any] = []
        if isinstance(value, ControlCommand):
            try:
                self.limits = apply_params(self.limits, value.params)
            except ValueError as exc:
                return [dead_event(self.step, str(exc), value)], StatefulLogic.RETAIN
            out.append(params_alert(self.scope, value, self.limits))
            return out, StatefulLogic.RETAIN
        p = self.book.on_summary(value)
        self._pnl.set(p.pnl)
        self._dd.set(p.drawdown)
        out.extend(
            signal(
                self.tracker,
                self.scope,
                p.ts,
                check_portfolio(p, self.limits),
                ("drawdown", "loss", "open_notional"),
                p.as_metrics(),
            )
        )
        return out, StatefulLogic.RETAIN

    def snapshot(self) -> tuple[Any, ...]:
        return self.book.snapshot(), self.tracker.active, self.limits


# --- the later stages' merge inputs ---------------------------------------------------------

OTHER = "other"
"""The later stages' catch-all input: outputs of an upstream key nobody configured (a
market only in the data), which no marker ends; it starts ended, so it holds no one up
(its items go in arrival order)."""


StageInputs = dict[str, tuple[str, ...]]


def later_inputs(config: RiskConfig) -> tuple[StageInputs, StageInputs]:
    """Per account / ``global`` key and per scope key, the merge inputs of a bounded replay,
    in tie order: the commands first, then each upstream stage key that can send to it
    (``"markets@<key>"``, ``"exposure@<asset>"``, ``"index@<basket>"``,
    ``"portfolio@<scope>"``), then :data:`OTHER`. Only the keys that can send: a scope
    waits for no market that never speaks to it, so it holds little."""
    baskets = {m.index_basket for m in config.markets if m.index_basket is not None}
    portfolio: dict[str, list[str]] = {GLOBAL: []}
    scopes: dict[str, list[str]] = {}
    for m in config.markets:
        tag = f"markets@{m.key}"
        portfolio.setdefault(account_scope(m.account), []).append(tag)
        portfolio[GLOBAL].append(tag)
        for s in scopes_of_market(m.venue, m.symbol, m.account):
            scopes.setdefault(s, []).append(tag)
        for a in symbol_assets(m.symbol):
            scopes[asset_scope(a)].append(f"exposure@{a}")
    for b in sorted(baskets | set(config.baskets)):
        scopes.setdefault(config.basket_limits(b).halt_scope, []).append(f"index@{b}")
    for p in portfolio:
        scopes.setdefault(p, []).append(f"portfolio@{p}")

    def named(tags: dict[str, list[str]]) -> StageInputs:
        return {k: ("control", *dict.fromkeys(v), OTHER) for k, v in sorted(tags.items())}

    return named(portfolio), named(scopes)
