"""Risk scopes: the names a halt or a limit applies to.

``global`` covers everything; ``account:<name>`` an account; ``asset:<A>`` every market that
trades A as base or quote; ``market:<venue>:<symbol>`` one market. A market trades only while
no scope that covers it is HALTED.
"""

from __future__ import annotations

from makerflow.schemas.events import market_key

GLOBAL = "global"


def market_scope(venue: str, symbol: str) -> str:
    return market_key_scope(market_key(venue, symbol))


def market_key_scope(key: str) -> str:
    """The scope of the market with key ``venue:symbol``."""
    return f"market:{key}"


def asset_scope(asset: str) -> str:
    return f"asset:{asset}"


def account_scope(account: str) -> str:
    return f"account:{account}"


def symbol_assets(symbol: str) -> tuple[str, str]:
    """Base and quote of a ccxt unified symbol (``BTC/USDT``, ``BTC/USDT:USDT``)."""
    pair = symbol.split(":", 1)[0]
    base, _, quote = pair.partition("/")
    if not base or not quote:
        raise ValueError(f"not a unified symbol (BASE/QUOTE[:SETTLE]): {symbol!r}")
    return base, quote


def scopes_of_market(venue: str, symbol: str, account: str = "main") -> tuple[str, ...]:
    """Every scope whose halt stops trading on ``venue:symbol`` for ``account``."""
    base, quote = symbol_assets(symbol)
    return (
        GLOBAL,
        account_scope(account),
        asset_scope(base),
        asset_scope(quote),
        market_scope(venue, symbol),
    )


def covers(scope: str, venue: str, symbol: str, account: str = "main") -> bool:
    """Whether a halt of ``scope`` stops trading on ``venue:symbol`` for ``account``."""
    return scope in scopes_of_market(venue, symbol, account)


def validate_scope(scope: str) -> str:
    """``scope`` itself if well formed, else a ValueError that shows the accepted forms."""
    if scope == GLOBAL:
        return scope
    kind, _, rest = scope.partition(":")
    ok = (kind in ("account", "asset") and rest and ":" not in rest) or (
        kind == "market" and ":" in rest and all(rest.split(":", 1))
    )
    if not ok:
        raise ValueError(
            f"bad scope {scope!r}: use global, account:<name>, asset:<ASSET> or"
            " market:<venue>:<symbol>"
        )
    return scope
