"""Typed events of the pipeline.

Every event is a frozen msgspec Struct with a schema version ``v`` and an event time ``ts``
(integer nanoseconds UTC, the exchange's or the chain's timestamp). Kafka values are the JSON
encoding of one event. Each struct is tagged (``"type": "<name>"``) so that a topic that carries
a union (``md.book`` holds snapshots and deltas) decodes without guessing.

Prices and quantities are floats: they are parsed once from the venue's decimal strings at the
edge, and rounded to the market's tick and lot only where an order leaves for the exchange.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1
"""The version every event of this module is written with; a reader refuses any other."""

Side = Literal["buy", "sell"]
Level = tuple[float, float]
"""A book level: (price, quantity). In a delta, quantity 0 removes the level."""


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    tag=_snake,
):
    """Base of every event: schema version and event time."""

    v: int = SCHEMA_VERSION
    ts: int
    """Event time, integer nanoseconds since the Unix epoch, UTC."""


def market_key(venue: str, symbol: str) -> str:
    """The key of a market, ``venue:symbol`` (``binance:BTC/USDT``)."""
    return f"{venue}:{symbol}"


def split_market_key(key: str) -> tuple[str, str]:
    """``venue:symbol`` -> ``(venue, symbol)``; the symbol keeps its own colons
    (``binance:BTC/USDT:USDT`` -> ``("binance", "BTC/USDT:USDT")``)."""
    venue, _, symbol = key.partition(":")
    return venue, symbol


def balance_key(account: str, asset: str) -> str:
    """The key of a balance, ``account:asset`` (``main:BTC``)."""
    return f"{account}:{asset}"


class MarketEvent(Event, frozen=True, kw_only=True):
    """An event about one market (``venue:symbol``)."""

    venue: str
    symbol: str

    @property
    def key(self) -> str:
        return market_key(self.venue, self.symbol)


# --- public market data -------------------------------------------------------------------


class BookSnapshot(MarketEvent, frozen=True, kw_only=True):
    """A full L2 book. ``seq`` is the exchange's update id the snapshot is valid at."""

    recv_ts: int = 0
    seq: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class BookDelta(MarketEvent, frozen=True, kw_only=True):
    """An L2 diff update covering exchange update ids ``first_seq..last_seq``.

    ``prev_seq`` is the last id of the previous update where the venue sends it (Binance
    futures ``pu``); spot venues leave it ``None`` and continuity is ``first_seq == last + 1``.
    """

    recv_ts: int = 0
    first_seq: int
    last_seq: int
    prev_seq: int | None = None
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()


class Trade(MarketEvent, frozen=True, kw_only=True):
    """A public trade; ``side`` is the taker's side."""

    recv_ts: int = 0
    trade_id: str
    price: float
    qty: float
    side: Side


class DataQuality(MarketEvent, frozen=True, kw_only=True):
    """A data-quality finding on a market's feed."""

    kind: Literal["gap", "crossed", "duplicate", "stale", "out_of_order", "silent", "resync"]
    detail: str = ""


class Tick(MarketEvent, frozen=True, kw_only=True):
    """Top of book and trade statistics after a change of the top of book or a trade."""

    reason: Literal["book", "trade"]
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    mid: float
    microprice: float
    spread_bps: float
    imbalance: float
    """(bid depth - ask depth) / (bid depth + ask depth) over the configured N levels."""
    last_price: float | None = None
    last_qty: float | None = None
    vwap: float | None = None
    """Rolling volume-weighted average trade price."""


class Bar(MarketEvent, frozen=True, kw_only=True):
    """OHLCV over an event-time tumbling window ``[start_ts, end_ts)`` aligned to the epoch."""

    start_ts: int
    end_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    trades: int


class DexPrice(Event, frozen=True, kw_only=True):
    """A DEX pool's price of ``base`` in ``quote`` at a block."""

    chain: str
    venue: str
    """The DEX (``uniswap_v2``, ``uniswap_v3``)."""
    pool: str
    base: str
    quote: str
    block: int
    price: float
    liquidity: float = 0.0
    """Depth the pool offers, in quote units, used to weight venues."""

    @property
    def key(self) -> str:
        return f"{self.chain}:{self.pool}"


class OraclePrice(Event, frozen=True, kw_only=True):
    """An on-chain oracle (Chainlink AggregatorV3) answer."""

    chain: str
    feed: str
    base: str
    quote: str
    block: int
    round_id: int
    price: float
    updated_at: int
    """The round's ``updatedAt``, ns UTC."""

    @property
    def key(self) -> str:
        return f"{self.chain}:{self.feed}"


# --- derived prices and risk ---------------------------------------------------------------


class VenuePrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One venue's price of an asset as the index saw it."""

    venue: str
    price: float
    weight: float
    ts: int
    reason: str = ""
    """Why the venue was excluded; empty when used."""


class IndexConstituent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    asset: str
    weight: float
    price: float | None
    used: tuple[VenuePrice, ...] = ()
    excluded: tuple[VenuePrice, ...] = ()


class IndexPrice(Event, frozen=True, kw_only=True):
    """A basket's price with the reasoning behind it."""

    basket: str
    quote: str
    price: float | None
    """``None`` when a constituent has too few venues; ``reason`` says why."""
    constituents: tuple[IndexConstituent, ...]
    oracle_price: float | None = None
    oracle_deviation_bps: float | None = None
    flagged: bool = False
    reason: str = ""

    @property
    def key(self) -> str:
        return self.basket


class RiskState(Event, frozen=True, kw_only=True):
    """The trading state of a scope: ``market:<venue>:<symbol>``, ``asset:<A>``,
    ``account:<name>`` or ``global``.

    ``HALTED`` is the kill switch (only a person resumes); ``PAUSED`` is a market whose data
    is stale or whose book is invalid: quotes are pulled and come back by themselves when the
    data is good again. Risk publishes every scope's state on each change and again every
    heartbeat period of event time (``heartbeat``), so a consumer that starts late knows it
    within one period; a scope's ``ts`` never goes backwards.
    """

    scope: str
    status: Literal["ACTIVE", "PAUSED", "HALTED"]
    reasons: tuple[str, ...] = ()
    metrics: dict[str, float] = {}
    since: int = 0
    """Event time the current status began (the breach or the command), ns UTC."""
    heartbeat: bool = False
    """A repeat of the current state, not a change."""

    @property
    def key(self) -> str:
        return self.scope


class Alert(Event, frozen=True, kw_only=True):
    name: str
    severity: Literal["info", "warning", "critical"]
    scope: str
    message: str
    labels: dict[str, str] = {}

    @property
    def key(self) -> str:
        return self.scope


class ControlCommand(Event, frozen=True, kw_only=True):
    """An operator's command. Risk never resumes on its own: only ``resume`` does."""

    command: Literal["halt", "resume", "set_params"]
    scope: str
    params: dict[str, float | int | str | bool] = {}
    issued_by: str = ""
    reason: str = ""
    nonce: str = ""
    """A unique string per command (replays of one are refused)."""
    signature: str = ""
    """HMAC-SHA256 (hex) over the command's canonical bytes
    (:mod:`makerflow.operators.control_auth`); unsigned commands change nothing."""

    @property
    def key(self) -> str:
        return self.scope


# --- quoting and orders -----------------------------------------------------------------------


class QuoteLevel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    price: float
    qty: float


class QuoteLadder(MarketEvent, frozen=True, kw_only=True):
    """The quotes the model wants resting on a market."""

    reference: float
    reservation: float
    half_spread: float
    bids: tuple[QuoteLevel, ...] = ()
    asks: tuple[QuoteLevel, ...] = ()


class OrderIntent(MarketEvent, frozen=True, kw_only=True):
    """What the quoter wants done; the exchange sink does it.

    ``client_order_id`` is deterministic (derived from market, side, level and a sequence), so
    a retried send can never place the same order twice.
    """

    account: str = "main"
    action: Literal["place", "cancel", "cancel_all"]
    client_order_id: str | None = None
    side: Side | None = None
    price: float | None = None
    qty: float | None = None
    order_type: Literal["limit", "market"] = "limit"
    post_only: bool = True
    reference: float | None = None
    """The reference price the order was priced from, for the fat-finger distance guard."""
    reduce_only: bool = False
    """The order only reduces a position: the risk gate lets it through a halted scope
    where configured (``GateConfig.reduce_only_passes``)."""
    reason: str = ""


OrderStatus = Literal[
    "new", "ack", "partial", "filled", "canceled", "rejected", "expired", "unknown"
]
"""A venue's word on an order. ``unknown``: a place was sent and its answer was lost (timeout,
disconnect, retries exhausted); the order may be live, so its slot and funds stay taken until
the venue says what happened (look-up by client id, the private stream, or the sweep)."""


class OrderEvent(MarketEvent, frozen=True, kw_only=True):
    """A change in one of our orders' lives, from the exchange (or a local reject)."""

    account: str = "main"
    client_order_id: str
    exchange_order_id: str | None = None
    status: OrderStatus
    side: Side
    price: float | None = None
    qty: float
    filled_qty: float = 0.0
    reason: str = ""


class Fill(MarketEvent, frozen=True, kw_only=True):
    """One execution of one of our orders. ``fee`` is paid in ``fee_asset``."""

    account: str = "main"
    trade_id: str
    client_order_id: str | None = None
    exchange_order_id: str | None = None
    side: Side
    price: float
    qty: float
    fee: float = 0.0
    fee_asset: str = ""
    liquidity: Literal["maker", "taker"] = "maker"


# --- balances and reconciliation -----------------------------------------------------------


class BalanceSnapshot(Event, frozen=True, kw_only=True):
    """The exchange's word on one balance of one account."""

    venue: str
    account: str = "main"
    asset: str
    free: float
    used: float = 0.0
    total: float

    @property
    def key(self) -> str:
        return balance_key(self.account, self.asset)


class InventoryCorrection(MarketEvent, frozen=True, kw_only=True):
    """A market's base-asset position re-anchored to the venue's balance of ``asset`` at
    ``ts``: what our fills said and what the balance implies differ by more than
    ``tolerance``, and the venue wins (the position goes from ``before`` to ``after``)."""

    account: str = "main"
    asset: str
    before: float
    after: float
    balance: float
    """The venue's total of ``asset`` at ``ts``."""
    difference: float
    """Venue-implied position minus ours, both at ``ts``."""
    tolerance: float
    reason: str = ""


class Transfer(Event, frozen=True, kw_only=True):
    """A deposit (positive ``amount``) or withdrawal (negative)."""

    venue: str
    account: str = "main"
    asset: str
    transfer_id: str
    amount: float

    @property
    def key(self) -> str:
        return balance_key(self.account, self.asset)


class ReconReport(Event, frozen=True, kw_only=True):
    """One balance reconciliation window ``[window_start, window_end)``.

    ``version`` rises when a late event amends a window already reported.
    """

    account: str
    asset: str
    window_start: int
    window_end: int
    version: int = 1
    opening: float
    expected: float
    reported: float | None
    difference: float | None
    tolerance: float
    fills_matched: int
    status: Literal["OK", "BREAK"]
    reason: str = ""

    @property
    def key(self) -> str:
        return balance_key(self.account, self.asset)


class DeadLetter(Event, frozen=True, kw_only=True):
    """Input that could not become an event, kept whole with the reason."""

    step: str
    reason: str
    raw: bytes
    key: bytes | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    BookSnapshot,
    BookDelta,
    Trade,
    DataQuality,
    Tick,
    Bar,
    DexPrice,
    OraclePrice,
    IndexPrice,
    RiskState,
    Alert,
    ControlCommand,
    QuoteLadder,
    OrderIntent,
    OrderEvent,
    Fill,
    BalanceSnapshot,
    Transfer,
    ReconReport,
    DeadLetter,
    InventoryCorrection,
)
