"""Client order ids and id sessions of the quoter.

Client order ids are deterministic: ``mf-<h>-<side><level>-<seq>`` where ``h`` hashes the
id namespace, account, market and the event time of the quoter's first event, ``side`` is
``b`` or ``s`` and ``seq`` counts the market's placements in base 36. The same input gives
the same ids, so a retried or replayed intent can never place a second order; a quoter that
starts later on the stream gets a new ``h``. At most 32 characters of ``[a-z0-9-]``, which
Binance's ``newClientOrderId`` (and most exchanges) accept.
"""

from __future__ import annotations

import hashlib
import re

from makerflow.schemas.events import Side

MAX_CLIENT_ID = 32
ID_PREFIX = "mf-"
"""Every client order id a quoter makes starts with it; an open order with it that the
order state does not know is an orphan."""
_SLOT = re.compile(r"mf-[0-9a-z]+-([bs])(\d+)-[0-9a-z]+")


def client_order_id(session: str, side: Side, level: int, seq: int) -> str:
    """``mf-<session>-<b|s><level>-<seq base 36>``."""
    cid = f"mf-{session}-{'b' if side == 'buy' else 's'}{level}-{_base36(seq)}"
    if len(cid) > MAX_CLIENT_ID:
        raise ValueError(f"client order id {cid!r} is longer than {MAX_CLIENT_ID} characters")
    return cid


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def session_id(namespace: str, account: str, venue: str, symbol: str, first_ts: int) -> str:
    """The 10 hex characters that make a quoter run's client order ids its own."""
    text = f"{namespace}|{account}|{venue}|{symbol}|{first_ts}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def order_slot(cid: str) -> tuple[Side, int] | None:
    """The (side, level) a quoter's client order id names; None for another id."""
    m = _SLOT.fullmatch(cid)
    if m is None:
        return None
    return ("buy" if m.group(1) == "b" else "sell", int(m.group(2)))
