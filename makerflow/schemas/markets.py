"""The market registry: each market's venue rules and index basket, configured once.

A configuration file's top-level ``[[markets]]`` array is the registry::

    [[markets]]
    venue = "binance"
    symbol = "BTC/USDT"
    tick_size = 0.01
    lot_size = 0.00001
    min_qty = 0.00001
    min_notional = 5.0
    maker_fee_bps = 10.0
    index_basket = "BTC"

Every service takes its market facts from it (:func:`resolve_section`): a ``[quoting]`` or
``[risk]`` market entry names a registry market (``market = "binance:BTC/USDT"``, or its
``venue`` and ``symbol``) and holds only that service's own settings; left out, a service's
markets are all of the registry's. The execution service's private-stream symbols default to
the registry's markets of its venue and account (and the gate's markets follow them). An
entry that still states a fact is accepted when it agrees with the registry and is a
:class:`~makerflow.schemas.config.ConfigError` naming the table and the key when it does not;
an entry naming a market the registry does not have is one too. A file without a registry
keeps the older form, every fact stated in the service's own entries. The environment
overrides a registry fact as it does a table's key: ``MAKERFLOW__MARKETS__0__TICK_SIZE=0.1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from makerflow.schemas.config import Config, ConfigError
from makerflow.schemas.events import market_key
from makerflow.schemas.scopes import symbol_assets

REGISTRY_KEY = "markets"
"""The top-level key of the registry in a configuration file."""


class Market(Config, frozen=True, kw_only=True):
    """One market: where it trades, the venue's rules for orders on it, and its basket."""

    venue: str
    symbol: str
    account: str = "main"
    tick_size: float
    lot_size: float
    min_qty: float = 0.0
    min_notional: float = 0.0
    maker_fee_bps: float = 0.0
    """The account's maker fee on this market, bps of the price (negative: a rebate)."""
    taker_fee_bps: float = 0.0
    index_basket: str | None = None
    """The basket of the index price (``IndexPrice.basket``) that concerns this market."""

    def __post_init__(self) -> None:
        symbol_assets(self.symbol)  # raises on a symbol that is not BASE/QUOTE
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} of {self.key} must be > 0, got {value!r}")
        for name in ("min_qty", "min_notional"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} of {self.key} must be >= 0, got {value!r}")
        for name in ("maker_fee_bps", "taker_fee_bps"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} of {self.key} must be finite")

    @property
    def key(self) -> str:
        return market_key(self.venue, self.symbol)


RULES = ("tick_size", "lot_size", "min_qty", "min_notional")
"""The venue's order rules a quoting entry may restate (then they must agree)."""
IDENTITY = ("venue", "symbol", "account")
FACTS = tuple(Market.__struct_fields__)
"""Everything the registry owns about a market."""


class MarketRegistry(Config, frozen=True, kw_only=True):
    """The markets, each once: the single owner of market facts."""

    markets: tuple[Market, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for m in self.markets:
            if m.key in seen:
                raise ValueError(f"market {m.key} is in the registry twice")
            seen.add(m.key)

    def get(self, key: str) -> Market | None:
        for m in self.markets:
            if m.key == key:
                return m
        return None

    def __getitem__(self, key: str) -> Market:
        m = self.get(key)
        if m is None:
            raise KeyError(f"market {key} is not in the registry ({', '.join(self.market_keys())})")
        return m

    def market_keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.markets)

    def of(self, venue: str, account: str | None = None) -> tuple[Market, ...]:
        """The markets of ``venue`` (and of ``account``, when given)."""
        return tuple(
            m
            for m in self.markets
            if m.venue == venue and (account is None or m.account == account)
        )

    def symbols(self, venue: str, account: str | None = None) -> tuple[str, ...]:
        return tuple(m.symbol for m in self.of(venue, account))


def registry_of(data: Mapping[str, Any], where: str) -> MarketRegistry | None:
    """The registry of a file's data (None when the file has no top-level ``[[markets]]``)."""
    if REGISTRY_KEY not in data:
        return None
    raw = data[REGISTRY_KEY]
    if not isinstance(raw, list):
        raise ConfigError(
            f"{where}: [[markets]] (the market registry): expected an array of tables,"
            f" got {type(raw).__name__}"
        )
    try:
        return msgspec.convert({"markets": raw}, type=MarketRegistry)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: [[markets]] (the market registry): {exc}") from None


def resolve_section(
    section: str, table: Mapping[str, Any], registry: MarketRegistry | None, where: str
) -> dict[str, Any]:
    """``table`` (a service's table) with its market facts taken from ``registry``."""
    out = dict(table)
    if registry is None:
        return out
    if section in RESOLVED_FACTS:
        return resolve_markets(section, out, registry, where, f"[{section}]")
    if section in ("execution", "reconcile"):
        # The private stream's (and the open-order listing's) symbols: the registry's
        # markets of its venue and account, unless the table names them.
        name = "private" if section == "execution" else "exchange"
        stream = dict(out.get(name) or {})
        if "symbols" not in stream:
            venue = stream.get("venue", "binance")
            account = stream.get("account", "main")
            stream["symbols"] = list(registry.symbols(venue, account))
            out[name] = stream
        return out
    if section == "all_in_one":
        for inner in RESOLVED_FACTS:
            out[inner] = resolve_markets(
                inner, dict(out.get(inner) or {}), registry, where, f"[all_in_one.{inner}]"
            )
    return out


RESOLVED_FACTS: dict[str, tuple[str, ...]] = {
    "quoting": FACTS,
    "risk": (*IDENTITY, "index_basket"),
}
"""Per section with ``[[<section>.markets]]``: the registry's facts each entry takes (and must
agree with where it states them itself)."""


def resolve_markets(
    section: str, table: dict[str, Any], registry: MarketRegistry, where: str, label: str
) -> dict[str, Any]:
    """``table``'s ``markets`` entries (default: every market of the registry), each with the
    registry's facts of its market for ``section``."""
    facts = RESOLVED_FACTS[section]
    entries = table.get("markets")
    if entries is None:
        entries = [{"market": k} for k in registry.market_keys()]
    resolved = []
    for i, entry in enumerate(_entries(entries, where, label)):
        at = f"{where}: {label} markets[{i}]"
        m, own = _lookup(entry, registry, at)
        _agree(own, m, facts, at)
        own.update({k: getattr(m, k) for k in facts})
        resolved.append(own)
    table["markets"] = resolved
    return table


def _entries(entries: Any, where: str, label: str) -> Sequence[dict[str, Any]]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: {label} markets: expected an array of tables")
    return entries


def _lookup(
    entry: Mapping[str, Any], registry: MarketRegistry, at: str
) -> tuple[Market, dict[str, Any]]:
    own = dict(entry)
    key = own.pop("market", None)
    if key is None:
        if "venue" not in own or "symbol" not in own:
            raise ConfigError(
                f'{at}: name a market of the registry: market = "VENUE:SYMBOL"'
                f" (one of {', '.join(registry.market_keys())})"
            )
        key = market_key(str(own["venue"]), str(own["symbol"]))
    m = registry.get(str(key))
    if m is None:
        raise ConfigError(
            f"{at}: market {key} is not in the [[markets]] registry"
            f" (it has {', '.join(registry.market_keys()) or 'none'})"
        )
    return m, own


def _agree(own: Mapping[str, Any], m: Market, names: Sequence[str], at: str) -> None:
    for name in names:
        if name not in own:
            continue
        stated, registered = own[name], getattr(m, name)
        same = (
            math.isclose(float(stated), float(registered), rel_tol=1e-12, abs_tol=0.0)
            if isinstance(stated, int | float) and isinstance(registered, int | float)
            else stated == registered
        )
        if not same:
            raise ConfigError(
                f"{at}.{name}: {stated!r} disagrees with the [[markets]] registry's"
                f" {m.key} {name} = {registered!r}; state it once, in the registry"
            )
