"""Binance spot v3 on the wire: request parsing, error bodies, the JSON of orders, trades,
markets and execution reports, and request signatures (HMAC-SHA256 of the query string and
body as sent). Pure functions, shared by the REST layer and the streams."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from makerflow.exchange.engine import Execution, MarketSpec, Order, OrderUpdate

_SIGNATURE = re.compile(r"(^|&)signature=[^&]*")


@dataclass(frozen=True)
class ApiKey:
    """A key pair and the account it trades. ``repr`` hides the secret."""

    key: str
    secret: str = field(repr=False)
    account: str


def fmt(d: Decimal, places: int = 8) -> str:
    return f"{d:.{places}f}"


class ApiError(Exception):
    """A refusal with Binance's HTTP status, error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unsigned_payload(query: str, body: str) -> str:
    """What Binance signs: the query string and the body as sent, minus the signature."""
    return _SIGNATURE.sub("", query).lstrip("&") + _SIGNATURE.sub("", body).lstrip("&")


def check_signature(key: ApiKey, payload: str, signature: str) -> None:
    expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiError(400, -1022, "Signature for this request is not valid.")


def check_timestamp(params: dict[str, str], now_ms: int) -> None:
    """Binance's freshness rule: ``timestamp`` inside ``recvWindow`` of the server's clock
    (checked when the request is processed, as the venue's matching engine does)."""
    try:
        ts = int(params["timestamp"])
        window = int(params.get("recvWindow", "5000"))
    except (KeyError, ValueError):
        raise ApiError(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        ) from None
    if ts >= now_ms + 1000 or now_ms - ts > window:
        raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def error_response(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def need(p: dict[str, str], name: str) -> str:
    v = p.get(name)
    if not v:
        raise ApiError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return v


def decimal_param(p: dict[str, str], name: str) -> Decimal:
    try:
        return Decimal(need(p, name))
    except InvalidOperation:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def in_window(t: int, p: dict[str, str]) -> bool:
    start = int(p.get("startTime", "0"))
    end = int(p.get("endTime", str(2**62)))
    return start <= t <= end


def symbol_info(m: MarketSpec) -> dict[str, Any]:
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "quoteOrderQtyMarketAllowed": False,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(m.min_price),
                "maxPrice": fmt(m.max_price),
                "tickSize": fmt(m.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(m.min_qty),
                "maxQty": fmt(m.max_qty),
                "stepSize": fmt(m.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(m.min_notional),
                "applyMinToMarket": False,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def order_json(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": True,
        "workingTime": o.time,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "NONE",
    }


def cancel_json(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": f"cancel-{o.order_id}",
        "transactTime": o.update_time,
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "selfTradePreventionMode": "NONE",
    }


def trade_json(t: Execution) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "id": t.trade_id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": fmt(t.price),
        "qty": fmt(t.qty),
        "quoteQty": fmt(t.quote_qty),
        "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time,
        "isBuyer": t.side == "BUY",
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


def execution_report(u: OrderUpdate) -> dict[str, Any]:
    o, ex = u.order, u.execution
    canceled = u.exec_type == "CANCELED"
    return {
        "e": "executionReport",
        "E": u.time,
        "s": o.symbol,
        # On a cancel Binance puts the cancel request's id in "c" and the order's in "C".
        "c": f"cancel-{o.order_id}" if canceled else o.client_order_id,
        "S": o.side,
        "o": o.type,
        "f": o.time_in_force,
        "q": fmt(o.orig_qty),
        "p": fmt(o.price),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": o.client_order_id if canceled else "",
        "x": u.exec_type,
        "X": o.status,
        "r": u.reject_reason,
        "i": o.order_id,
        "l": fmt(ex.qty) if ex else "0.00000000",
        "z": fmt(o.executed_qty),
        "L": fmt(ex.price) if ex else "0.00000000",
        "n": fmt(ex.commission) if ex else "0",
        "N": ex.commission_asset if ex else None,
        "T": u.time,
        "t": ex.trade_id if ex else -1,
        "v": 0,
        "I": u.time,
        "w": o.is_open,
        "m": ex.is_maker if ex else False,
        "M": False,
        "O": o.time,
        "Z": fmt(o.cum_quote),
        "Y": fmt(ex.quote_qty) if ex else "0.00000000",
        "Q": "0.00000000",
        "W": o.time,
        "V": "NONE",
    }
