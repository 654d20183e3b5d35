"""Start the local exchange in a background thread, and get ccxt clients pointed at it.

with LocalExchange() as ex:
    client = ex.client()              # ccxt.async_support.binance on ex.url
    pro = ex.client(pro=True)         # ccxt.pro.binance: watch_orders / watch_my_trades
    ex.inject("rate_limit", count=2, path="/api/v3/order", retry_after_s=2, enforce=True)
    ex.inject("late", path="/api/v3/order", delay_s=3)   # processed after the client gave up
    ex.inject("reorder_event", exec_type="NEW")           # the fill overtakes the order's NEW
    ex.chaos(0.1, seed=7)             # a seeded mix of every fault at 10 % of opportunities
    ex.advance(100)                   # with speed=0: apply 100 public market events now
    ex.state()["faults_by_kind"]      # what was injected, per kind
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from makerflow.exchange.engine import MarketSpec, MatchingEngine
from makerflow.exchange.faults import ChaosConfig, Fault, FaultKind, FaultPlan
from makerflow.exchange.market_data import MarketEvent, RandomWalk, replay_file
from makerflow.exchange.server import ApiKey, ExchangeServer

T = TypeVar("T")

DEFAULT_API_KEY = "makerflow-local-key"
DEFAULT_SECRET = "makerflow-local-secret"

BTCUSDT = MarketSpec(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal(5),
)
ETHUSDT = MarketSpec(
    symbol="ETHUSDT",
    base="ETH",
    quote="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.0001"),
    min_qty=Decimal("0.0001"),
    min_notional=Decimal(5),
)


def ccxt_client(
    url: str,
    api_key: str = DEFAULT_API_KEY,
    secret: str = DEFAULT_SECRET,
    *,
    pro: bool = False,
    **config: Any,
) -> Any:
    """An unmodified ccxt ``binance`` client (async, or ccxt.pro with ``pro``) whose URLs point
    at a local exchange at ``url`` (``http://127.0.0.1:PORT``).

    Only spot markets are loaded, and currencies and margin pairs (private ``sapi`` calls the
    local exchange does not serve) are not fetched. ``config`` goes to the ccxt constructor
    (``timeout``, ``enableRateLimit``, ``rateLimit``, ``options``...).
    """
    if pro:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt.async_support as ccxt_mod

    options = {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        **config.pop("options", {}),
    }
    client = ccxt_mod.binance({"apiKey": api_key, "secret": secret, "options": options, **config})
    base = url.rstrip("/")
    ws = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    urls = copy.deepcopy(client.urls)
    api = urls["api"]
    for name in ("public", "private"):
        api[name] = f"{base}/api/v3"
    api["v1"] = f"{base}/api/v1"
    for name in ("sapi", "sapiV2", "sapiV3", "sapiV4"):
        api[name] = f"{base}/sapi/{name[-2:] if name != 'sapi' else 'v1'}"
    if "ws" in api:
        # ccxt.pro tells spot from futures streams by "/stream" in the URL, as on
        # stream.binance.com; the local exchange serves raw streams on /stream too.
        api["ws"]["spot"] = f"{ws}/stream"
        api["ws"]["ws-api"] = {"spot": f"{ws}/ws-api/v3"}
    client.urls = urls
    client.hostname = "127.0.0.1"
    return client


class LocalExchange:
    """The local exchange (engine + Binance-shaped API) on a free loopback port, served from
    a background thread. A context manager; :attr:`url` is where ccxt should point."""

    def __init__(
        self,
        *,
        markets: tuple[MarketSpec, ...] = (BTCUSDT,),
        balances: Mapping[str, Mapping[str, Decimal | float | int | str]] | None = None,
        keys: tuple[ApiKey, ...] | None = None,
        market: Iterator[MarketEvent] | None = None,
        replay: str | Path | None = None,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        check_timestamp: bool = True,
        order_rate_limit: tuple[float, float] | None = None,
        faults: FaultPlan | None = None,
        order_lifetime_ms: int | None = None,
    ) -> None:
        """``balances``: account -> asset -> amount (default: ``main`` with 100 000 USDT and
        2 BTC). ``keys``: API keys (default: one for ``main``, :data:`DEFAULT_API_KEY`).
        ``market``: public events to run on; else ``replay`` (a recorded Binance file); else a
        seeded random walk on the first market. ``speed``: event-time seconds per wall
        second; 0 moves the market only on :meth:`advance`. ``order_rate_limit``:
        (orders per second, burst) per key, beyond which order requests get 429.
        ``faults``: the fault plan to start with (e.g. :meth:`FaultPlan.chaos`).
        ``order_lifetime_ms``: the venue expires open orders older than this (event time)."""
        balances = (
            balances if balances is not None else {"main": {"USDT": 100_000, "BTC": 2, "ETH": 20}}
        )
        engine = MatchingEngine(markets)
        for account, assets in balances.items():
            engine.add_account(account, {a: Decimal(str(v)) for a, v in assets.items()})
        keys = keys or (ApiKey(DEFAULT_API_KEY, DEFAULT_SECRET, "main"),)
        for k in keys:
            if k.account not in balances:
                engine.add_account(k.account)
        if market is None:
            if replay is not None:
                market = replay_file(replay, loop=True)
            else:
                m = markets[0]
                market = RandomWalk(symbol=m.symbol, tick=m.tick_size, lot=m.step_size).events()
        self.server = ExchangeServer(
            engine,
            list(keys),
            market,
            speed=speed,
            check_timestamp=check_timestamp,
            order_rate_limit=order_rate_limit,
            faults=faults,
            order_lifetime_ms=order_lifetime_ms,
        )
        self.keys = keys
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> LocalExchange:
        ready: Future[str] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="local-exchange", daemon=True
        )
        self._thread.start()
        self.url = ready.result(timeout=30)
        return self

    def _serve(self, ready: Future[str]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            runner = web.AppRunner(self.server.app(), access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self._host, self._port)
            loop.run_until_complete(site.start())
            self._runner = runner
            port = runner.addresses[0][1]
            ready.set_result(f"http://{self._host}:{port}")
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop = None
        self._thread = None

    def __enter__(self) -> LocalExchange:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- use --------------------------------------------------------------------------

    def client(self, *, pro: bool = False, key: ApiKey | None = None, **config: Any) -> Any:
        """A ccxt binance client for this exchange, authenticated with ``key`` (default: the
        first key)."""
        k = key or self.keys[0]
        return ccxt_client(self.url, k.key, k.secret, pro=pro, **config)

    def call(self, fn: Callable[[ExchangeServer], T]) -> T:
        """Run ``fn(server)`` on the exchange's loop (the only thread that touches the engine)
        and return its result: ``ex.call(lambda s: s.engine.open_orders("main"))``."""

        async def run() -> T:
            return fn(self.server)

        return self._run(run())

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the local exchange is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def inject(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        after: bool = False,
        delay_s: float = 2.0,
        retry_after_s: int = 1,
        enforce: bool = False,
        exec_type: str | None = None,
        hold: int = 1,
        gap_s: float = 1.0,
    ) -> None:
        """Make the next ``count`` matching requests (or private events) fail; see
        :class:`~makerflow.exchange.faults.Fault` for the kinds and parameters."""
        fault = Fault(
            kind,
            count,
            method,
            path,
            after,
            delay_s,
            retry_after_s,
            enforce,
            exec_type,
            hold,
            gap_s,
        )
        self.call(lambda s: s.faults.add(fault))

    def chaos(self, rate: float, seed: int = 0, **params: Any) -> None:
        """Mix faults in at ``rate`` (see :class:`~makerflow.exchange.faults.ChaosConfig`)."""
        config = ChaosConfig(rate, seed, **params)
        self.call(lambda s: s.faults.set_chaos(config))

    def expire(
        self,
        client_order_id: str | None = None,
        *,
        order_id: int | None = None,
        symbol: str | None = None,
        account: str = "main",
    ) -> dict[str, Any]:
        """The venue expires one open order now; returns it (Binance's order JSON)."""
        from makerflow.exchange.wire import order_json

        sym = symbol or next(iter(self.server.engine.markets))
        order = self._run(self.server.expire(account, sym, order_id, client_order_id))
        return order_json(order)

    def disconnect(self, account: str = "main", gap_s: float = 1.0) -> None:
        """Drop the account's user data stream; events of the next ``gap_s`` are lost."""
        self._run(self.server.user.disconnect(account, gap_s))

    def state(self) -> dict[str, Any]:
        """The admin state: requests, faults injected per kind, ... (see
        :meth:`ExchangeServer.state`)."""
        return self.call(lambda s: s.state())

    def ground_truth(self, account: str = "main") -> tuple[list[dict[str, Any]], list[Any]]:
        """Every order the venue accepted from ``account`` and every trade of it."""
        return self.call(lambda s: s.ground_truth(account))

    def advance(self, n: int = 1) -> int:
        """Apply the next ``n`` public market events now; returns how many there were."""
        return int(self._run(self.server.advance(n)))
