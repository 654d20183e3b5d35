"""The topic registry: each topic's name, key and value type.

Keys are ``venue:symbol`` for market topics and ``account:asset`` for balance topics, so a
topic's partitions spread markets (or balances) across workers; makerflow's producers map a
key to the same partition in every process, the one read by the worker its keyed steps run
on (:class:`makerflow.kafka_admin.KeyPartitions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from makerflow.schemas.codec import EventCodec
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
    InventoryCorrection,
    OraclePrice,
    OrderEvent,
    OrderIntent,
    QuoteLadder,
    ReconReport,
    RiskState,
    Tick,
    Trade,
    Transfer,
)

E = TypeVar("E")

KeyKind = Literal["market", "balance", "scope", "basket", "pool", "none"]


@dataclass(frozen=True)
class Topic(Generic[E]):
    """A Kafka topic: its name, what its key is, and the type of its values."""

    name: str
    key: KeyKind
    value_type: Any
    doc: str = ""
    codec: EventCodec[E] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codec", EventCodec(self.value_type))

    def key_of(self, event: Any) -> str:
        """The Kafka key of ``event`` on this topic."""
        if self.key == "none":
            return ""
        return str(event.key)


MD_BOOK: Topic[BookSnapshot | BookDelta] = Topic(
    "md.book", "market", BookSnapshot | BookDelta, "L2 snapshots and diff updates"
)
MD_TRADES: Topic[Trade] = Topic("md.trades", "market", Trade, "public trades")
MD_QUALITY: Topic[DataQuality] = Topic(
    "md.quality", "market", DataQuality, "data-quality findings (gaps, crossed books)"
)
DEX_PRICES: Topic[DexPrice | OraclePrice] = Topic(
    "dex.prices", "pool", DexPrice | OraclePrice, "DEX pool prices and oracle answers"
)
TICKS: Topic[Tick] = Topic("ticks", "market", Tick, "top of book and trade statistics")
BARS: Topic[Bar] = Topic("bars", "market", Bar, "OHLCV bars in epoch-aligned windows")
INDEX: Topic[IndexPrice] = Topic("index", "basket", IndexPrice, "basket index prices")
RISK_STATE: Topic[RiskState] = Topic("risk.state", "scope", RiskState, "ACTIVE / HALTED")
ALERTS: Topic[Alert] = Topic("alerts", "scope", Alert, "alerts for people")
CONTROL: Topic[ControlCommand] = Topic(
    "control", "scope", ControlCommand, "halt / resume / params commands"
)
QUOTES: Topic[QuoteLadder] = Topic("quotes", "market", QuoteLadder, "desired quote ladders")
ORDER_INTENTS: Topic[OrderIntent] = Topic(
    "orders.intents", "market", OrderIntent, "orders the quoter wants placed or canceled"
)
ORDER_EVENTS: Topic[OrderEvent] = Topic(
    "orders.events", "market", OrderEvent, "our orders' lives, from the exchange"
)
FILLS: Topic[Fill] = Topic("fills", "market", Fill, "our executions")
BALANCES: Topic[BalanceSnapshot] = Topic(
    "balances", "balance", BalanceSnapshot, "exchange balance snapshots"
)
TRANSFERS: Topic[Transfer] = Topic("transfers", "balance", Transfer, "deposits, withdrawals")
RECON_REPORTS: Topic[ReconReport] = Topic(
    "recon.reports", "balance", ReconReport, "reconciliation windows"
)
INVENTORY_CORRECTIONS: Topic[InventoryCorrection] = Topic(
    "inventory.corrections",
    "market",
    InventoryCorrection,
    "positions re-anchored to the venue's balances",
)
DEAD_LETTERS: Topic[DeadLetter] = Topic(
    "deadletter", "none", DeadLetter, "input that could not become an event"
)

TOPICS: dict[str, Topic[Any]] = {
    t.name: t
    for t in (
        MD_BOOK,
        MD_TRADES,
        MD_QUALITY,
        DEX_PRICES,
        TICKS,
        BARS,
        INDEX,
        RISK_STATE,
        ALERTS,
        CONTROL,
        QUOTES,
        ORDER_INTENTS,
        ORDER_EVENTS,
        FILLS,
        BALANCES,
        TRANSFERS,
        RECON_REPORTS,
        DEAD_LETTERS,
        INVENTORY_CORRECTIONS,
    )
}


def topic(name: str) -> Topic[Any]:
    """The registered topic called ``name``."""
    try:
        return TOPICS[name]
    except KeyError:
        known = ", ".join(sorted(TOPICS))
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None
