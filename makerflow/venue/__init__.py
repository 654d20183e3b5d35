"""The venue layer: everything makerflow knows about talking to an exchange through ccxt.

One place for the ccxt client (construction, credentials), the translation of ccxt's unified
orders, trades and balances into makerflow events, and the classification of ccxt's errors.
Both edges that talk to a venue use it: the exchange sink (:mod:`makerflow.sinks.exchange`)
and the private-stream source (:mod:`makerflow.sources.private_stream`); neither imports the
other.
"""

from makerflow.venue.client import ClientSpec, make_client
from makerflow.venue.credentials import Credentials, CredentialSpec
from makerflow.venue.errors import (
    ErrorClass,
    RejectReason,
    classify_error,
    may_be_duplicate_id,
    retry_after_s,
)
from makerflow.venue.translate import (
    balances_from_ccxt,
    exchange_order_from_ccxt,
    fill_from_ccxt,
    order_event_from_ccxt,
)

__all__ = [
    "ClientSpec",
    "CredentialSpec",
    "Credentials",
    "ErrorClass",
    "RejectReason",
    "balances_from_ccxt",
    "classify_error",
    "exchange_order_from_ccxt",
    "fill_from_ccxt",
    "make_client",
    "may_be_duplicate_id",
    "order_event_from_ccxt",
    "retry_after_s",
]
