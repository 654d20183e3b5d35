"""The exchange sink's configuration (``[execution.sink]``, ``[all_in_one.exchange]``)."""

from __future__ import annotations

from typing import Literal

from makerflow.operators.guards import GuardLimits
from makerflow.schemas.config import Config
from makerflow.venue import ClientSpec


class ExchangeSinkConfig(Config, frozen=True, kw_only=True):
    """Where and how intents are executed.

    ``url``: a local exchange (``http://127.0.0.1:PORT``, see :mod:`makerflow.exchange`);
    ``None`` uses ccxt's own URLs for ``exchange_id``. Credentials come from the environment
    variables named here or from the files named here (file wins), never from this config.
    """

    venue: str = "binance"
    exchange_id: str = "binance"
    url: str | None = None
    account: str = "main"
    dry_run: bool = False
    max_attempts: int = 4
    """Sends of one place or cancel while the venue refuses them (429) or cannot be
    reached; a place whose answer is lost is never re-sent (it is resolved by look-up)."""
    retry_backoff_s: float = 0.05
    """First retry delay; doubles per attempt up to ``retry_backoff_max_s``, plus jitter."""
    retry_backoff_max_s: float = 2.0
    retry_jitter: float = 0.5
    """Random extra delay, up to this fraction of the delay (seeded by ``retry_seed``)."""
    retry_seed: int | None = None
    max_retry_after_s: float = 30.0
    """The longest ``Retry-After`` honoured; a longer one gives up on the request."""
    timeout_ms: int = 5_000
    """Per request: ccxt's timeout (connect, read and total)."""
    recv_window_ms: int = 5_000
    """The venue's receive window for signed requests (Binance ``recvWindow``): after it
    a lost place can no longer land, so one the venue does not know is reported
    ``rejected`` (``not_placed``)."""
    enable_rate_limit: bool = True
    rate_limit_ms: float | None = None
    """Override ccxt's request spacing (ms); ``None`` keeps the venue's default."""
    intent_ttl_ms: int | None = 5_000
    """A place older than this (its ``ts`` against the wall clock at the sink) is dropped
    with ``expired_intent`` instead of sent; ``None`` sends any age (replays of old data)."""
    resolve_interval_s: float = 0.25
    """How often orders whose outcome is unknown are looked up by client id (backing off
    to 8x while the venue keeps saying nothing)."""
    max_in_flight: int = 32
    """Requests in flight to the venue at once, all markets of a worker."""
    max_in_flight_per_market: int = 8
    """Requests in flight for one market, so a slow market cannot take every slot."""
    harvest_interval_ms: int = 5
    """How often the Bytewax step looks for finished requests while any are in flight."""
    sweep_interval_s: float | None = 5.0
    """Reconciliation with the venue (open orders, recent fills, balances) at the start of
    each market and then every this often; ``None`` turns it off."""
    orphans: Literal["cancel", "adopt"] = "cancel"
    """What to do with an open order of ours (``client_id_prefix``) the order state does
    not know: cancel it, or adopt it into the state. Either way an alert goes out."""
    client_id_prefix: str = "mf-"
    recent_fills_limit: int = 100
    """Trades per market the sweep asks for (the newest)."""
    confirm_cancel_all: bool = True
    """After a cancel-all, check the venue's open orders until none of ours remain (the kill
    switch's :func:`~makerflow.sinks.flatten.flatten`)."""
    cancel_all_deadline_s: float = 2.0
    """Past this without the venue confirming, the failure is logged and counted (the
    kill switch's own flatten raises ``KillSwitchCancelFailed``); it keeps trying."""
    cancel_all_give_up_s: float = 30.0
    """How long one cancel-all keeps confirming before it leaves the rest to the sweep."""
    look_up_replays: bool = True
    """A place whose event time is before this run started (an intents topic re-read after a
    restart, an epoch replayed after a crash) that the start's mass status does not settle
    is looked up by client id before it is sent (see
    :mod:`makerflow.operators.replayed_intents`): the run before may have placed it and seen
    it close, and Binance frees a closed order's id, so sending it again would place it
    twice."""
    start_settle_ms: int = 300
    """At start nothing is sent until the venue's mass status is in and the intents from
    before this run have arrived: an intent of this run came, or none came for this long
    after the first ones (an order of ours the venue lists that no intent read so far
    placed is an orphan, so the listing waits for the intents that may have placed it).
    The execution service reads the intents topic with its markers and waits for those
    instead: every partition read to its end."""
    start_wait_ms: int = 10_000
    """The longest the start holds intents (the intents topic may be slow to come; intents
    stamped with recorded event times never look "of this run"). Past it, the venue's
    listing is judged with the intents that came: orders nobody can manage are cancelled."""
    drain_timeout_s: float = 30.0
    """At the end of the input: how long to wait for requests still in flight."""
    guards: GuardLimits = GuardLimits()
    api_key_env: str = "MAKERFLOW_EXCHANGE_API_KEY"
    secret_env: str = "MAKERFLOW_EXCHANGE_SECRET"
    api_key_file: str | None = None
    secret_file: str | None = None

    def client_spec(self) -> ClientSpec:
        return ClientSpec(
            exchange_id=self.exchange_id,
            url=self.url,
            timeout_ms=self.timeout_ms,
            enable_rate_limit=self.enable_rate_limit,
            rate_limit_ms=self.rate_limit_ms,
            recv_window_ms=self.recv_window_ms,
        )
