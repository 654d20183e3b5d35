"""Ctrl-C and SIGTERM for the execution service: close the venue clients, then exit at once.

Without this, SIGINT raises ``KeyboardInterrupt`` wherever the worker happens to be (in a
Kafka poll, a websocket read), Bytewax aborts the dataflow with a traceback, and the ccxt
clients and their asyncio loops are dropped unclosed; SIGTERM (``docker stop``) kills it
without a word. Here either signal logs one line, closes every exchange sink's ccxt client and
stops its loop (requests in flight are abandoned: their outcome is what the next start's mass
status and look-ups find), and exits with ``128 + signal``. What the flow wrote is on Kafka
(the sinks flush every batch); what it had not written yet is what a crash leaves, which a
restart recovers (see the README's *Execution after a restart*).
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

from makerflow.sinks.exchange_step import LIVE

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


def close_exchange_clients(timeout_s: float = CLOSE_TIMEOUT_S) -> int:
    """Close every exchange sink's ccxt client and loop in this process; how many."""
    return sum(lazy.close_all(timeout_s) for lazy in list(LIVE))


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    log.warning("execution: %s: closing the exchange clients and stopping", name)
    n = close_exchange_clients()
    log.warning("execution: %d exchange client(s) closed; exiting", n)
    logging.shutdown()
    os._exit(128 + signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as above (the service's main thread only)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
