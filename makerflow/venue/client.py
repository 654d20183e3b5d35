"""The ccxt client for a venue: ccxt's own URLs, or a local exchange's on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from makerflow.venue.credentials import Credentials


@dataclass(frozen=True)
class ClientSpec:
    """What a ccxt client needs besides credentials.

    ``url``: a local exchange (``http://127.0.0.1:PORT``, see :mod:`makerflow.exchange`);
    ``None`` uses ccxt's URLs for ``exchange_id``. ``rate_limit_ms`` overrides ccxt's request
    spacing; ``recv_window_ms`` is how long the venue accepts a signed request after it was
    signed (Binance's ``recvWindow``): after that a request that was lost in flight can no
    longer be placed, which is what lets a lost place be declared never-placed.
    """

    exchange_id: str = "binance"
    url: str | None = None
    timeout_ms: int = 5_000
    enable_rate_limit: bool = True
    rate_limit_ms: float | None = None
    recv_window_ms: int | None = None


def make_client(spec: ClientSpec, credentials: Credentials, *, pro: bool = False) -> Any:
    """An unmodified async ccxt client (ccxt.pro with ``pro``) for ``spec``."""
    extra: dict[str, Any] = {"timeout": spec.timeout_ms, "enableRateLimit": spec.enable_rate_limit}
    if spec.rate_limit_ms is not None:
        extra["rateLimit"] = spec.rate_limit_ms
    if spec.recv_window_ms is not None:
        extra["options"] = {"recvWindow": spec.recv_window_ms}
    if spec.url is not None:
        from makerflow.exchange.local import ccxt_client

        return ccxt_client(spec.url, credentials.api_key, credentials.secret, pro=pro, **extra)
    if pro:
        import ccxt.pro as mod
    else:
        import ccxt.async_support as mod
    cls = getattr(mod, spec.exchange_id)
    return cls({"apiKey": credentials.api_key, "secret": credentials.secret, **extra})
