"""A local exchange on loopback that speaks enough of Binance spot's API for the unmodified
ccxt client: a pure matching engine (:mod:`.engine`), a public market replayed or simulated
(:mod:`.market_data`), fault injection (:mod:`.faults`, :mod:`.fault_edge`) and the
REST/WebSocket layer (:mod:`.server`, :mod:`.wire`, :mod:`.user_stream`,
:mod:`.public_streams`). :class:`LocalExchange` runs it in a background thread for tests and
demos."""

from makerflow.exchange.engine import EngineError, MarketSpec, MatchingEngine
from makerflow.exchange.faults import ChaosConfig, Fault, FaultPlan
from makerflow.exchange.local import (
    BTCUSDT,
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    ETHUSDT,
    LocalExchange,
    ccxt_client,
)
from makerflow.exchange.server import ApiKey, ExchangeServer

__all__ = [
    "BTCUSDT",
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET",
    "ETHUSDT",
    "ApiKey",
    "ChaosConfig",
    "EngineError",
    "ExchangeServer",
    "Fault",
    "FaultPlan",
    "LocalExchange",
    "MarketSpec",
    "MatchingEngine",
    "ccxt_client",
]
