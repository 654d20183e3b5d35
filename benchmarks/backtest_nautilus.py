"""NautilusTrader beside hftbacktest in ``benchmarks/backtest.py``: the same raw recording and a
comparable 100 ms quoting market maker on Nautilus's ``BacktestEngine``.

Nautilus has no converter for raw Binance websocket captures, so the conversion is ours:
each ``depthUpdate`` becomes L2 ``OrderBookDelta`` s (a zero size deletes the level, the last
delta of a message carries ``F_LAST``), the REST snapshot line becomes a ``CLEAR`` and ``ADD`` s
(diffs before it are buffered and applied after it, Binance futures' sync rule), each
``trade`` a ``TradeTick``. The venue: L2 book, 10 ms base latency, limit orders filled by the
book and by trades (``trade_execution``), maker/taker fees of the test instrument. Nautilus's
L2 matching has no queue position: a resting order at the touch fills when a trade reaches
its price, which flatters it against hftbacktest's queue model.

``nautilus_result()`` returns the numbers for the combined table; run the file to print them.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backtest_hftbacktest import (
    HALF_SPREAD_BPS,
    MAX_POSITION,
    ORDER_QTY,
    QUOTE_EVERY_NS,
    RAW,
    SKEW_BPS_PER_LOT,
    TICK_SIZE,
)

LATENCY_NS = 10_000_000


@dataclass(frozen=True)
class NautilusResult:
    name: str
    raw_messages: int
    events: int
    import_s: float
    convert_s: float
    setup_s: float
    run_s: float
    quotes: int
    trades: int
    position: float
    fees: float
    pnl: float

    @property
    def convert_run_s(self) -> float:
        return self.convert_s + self.run_s

    @property
    def messages_per_s(self) -> float:
        return self.raw_messages / self.convert_run_s

    def row(self) -> dict[str, object]:
        return {
            **asdict(self),
            "convert_run_s": self.convert_run_s,
            "messages_per_s": self.messages_per_s,
        }


def convert(raw: Path, instrument_id: Any) -> tuple[list[Any], int]:
    """The raw capture as Nautilus L2 deltas and trade ticks, in receive-time order."""
    from nautilus_trader.model.data import BookOrder, OrderBookDelta, TradeTick
    from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import Price, Quantity

    last, snap = RecordFlag.F_LAST, RecordFlag.F_SNAPSHOT
    out: list[Any] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    synced_at: int | None = None
    last_id = 0
    messages = 0

    def levels(data: dict[str, Any], ts_event: int, ts_init: int, flags: int) -> None:
        rows = [(OrderSide.BUY, p, q) for p, q in data["b"]]
        rows += [(OrderSide.SELL, p, q) for p, q in data["a"]]
        for n, (side, p, q) in enumerate(rows):
            size = float(q)
            action = BookAction.UPDATE if size > 0 else BookAction.DELETE
            order = BookOrder(side, Price(float(p), 1), Quantity(size, 3), 0)
            f = flags | (last if n == len(rows) - 1 else 0)
            seq = data["u"]
            out.append(OrderBookDelta(instrument_id, action, order, f, seq, ts_event, ts_init))

    with gzip.open(raw, "rb") as fh:
        for line in fh:
            messages += 1
            ts_init = int(line[:19])
            msg = json.loads(line[20:])
            data = msg.get("data")
            if data is None:  # the REST depth snapshot
                ts = msg["T"] * 1_000_000
                last_id = msg["lastUpdateId"]
                out.append(OrderBookDelta.clear(instrument_id, 0, ts, ts_init))
                rows = [(OrderSide.BUY, p, q) for p, q in msg["bids"]]
                rows += [(OrderSide.SELL, p, q) for p, q in msg["asks"]]
                for n, (side, p, q) in enumerate(rows):
                    order = BookOrder(side, Price(float(p), 1), Quantity(float(q), 3), 0)
                    f = snap | (last if n == len(rows) - 1 else 0)
                    add = BookAction.ADD
                    out.append(OrderBookDelta(instrument_id, add, order, f, last_id, ts, ts_init))
                synced_at = ts_init
                for _, d in pending:  # diffs that straddle or follow the snapshot
                    if d["u"] >= last_id:
                        levels(d, d["T"] * 1_000_000, ts_init, 0)
                pending.clear()
                continue
            kind = data.get("e")
            if kind == "depthUpdate":
                if synced_at is None:
                    pending.append((ts_init, data))
                elif data["u"] >= last_id:
                    levels(data, data["T"] * 1_000_000, ts_init, 0)
            elif kind == "trade" and data.get("X") == "MARKET" and synced_at is not None:
                side = AggressorSide.SELLER if data["m"] else AggressorSide.BUYER
                out.append(
                    TradeTick(
                        instrument_id, Price(float(data["p"]), 1), Quantity(float(data["q"]), 3),
                        side, TradeId(str(data["t"])), data["T"] * 1_000_000, ts_init,
                    )
                )  # fmt: skip
    return out, messages


def _strategy_classes() -> tuple[type, type]:
    from nautilus_trader.config import StrategyConfig
    from nautilus_trader.model.enums import BookType, OrderSide, TimeInForce
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.trading.strategy import Strategy

    class QuoterConfig(StrategyConfig, frozen=True):
        instrument_id: InstrumentId

    class QuoteEvery100ms(Strategy):
        """Every 100 ms: one post-only bid and ask around the mid, skewed by inventory."""

        def __init__(self, config: QuoterConfig) -> None:
            super().__init__(config)
            self.iid = config.instrument_id
            self.quotes = 0

        def on_start(self) -> None:
            self.instrument = self.cache.instrument(self.iid)
            self.subscribe_order_book_deltas(self.iid, book_type=BookType.L2_MBP)
            self.clock.set_timer(
                "quote", timedelta(microseconds=QUOTE_EVERY_NS // 1000), callback=self.on_timer
            )

        def on_timer(self, _event: Any) -> None:
            book = self.cache.order_book(self.iid)
            if book is None:
                return
            best_bid, best_ask = book.best_bid_price(), book.best_ask_price()
            if best_bid is None or best_ask is None or best_ask <= best_bid:
                return
            bb, ba = float(best_bid), float(best_ask)
            mid = (bb + ba) / 2
            position = float(self.portfolio.net_position(self.iid))
            reservation = mid * (1 - SKEW_BPS_PER_LOT * position / ORDER_QTY / 1e4)
            half = mid * HALF_SPREAD_BPS / 1e4
            # Prices in integer ticks, as hftbacktest's: Nautilus's fixed-point Price reads
            # back as 61793.799999999996, never equal to a float computed here.
            tick = TICK_SIZE
            bid_tick = min(math.floor((reservation - half) / tick), round(bb / tick))
            ask_tick = max(math.ceil((reservation + half) / tick), round(ba / tick))
            want = {
                OrderSide.BUY: (position < MAX_POSITION - 1e-12, bid_tick),
                OrderSide.SELL: (position > -MAX_POSITION + 1e-12, ask_tick),
            }
            keep = set()
            for order in self.cache.orders_open(instrument_id=self.iid):
                wanted, price_tick = want[order.side]
                at_price = round(float(order.price) / tick) == price_tick
                if wanted and at_price and order.side not in keep:
                    keep.add(order.side)
                elif not order.is_pending_cancel:
                    self.cancel_order(order)
            for side, (wanted, price_tick) in want.items():
                if wanted and side not in keep:
                    price = f"{price_tick * tick:.1f}"
                    order = self.order_factory.limit(
                        instrument_id=self.iid,
                        order_side=side,
                        quantity=self.instrument.make_qty(Decimal(str(ORDER_QTY))),
                        price=self.instrument.make_price(Decimal(price)),
                        time_in_force=TimeInForce.GTC,
                        post_only=True,
                    )
                    self.submit_order(order)
                    self.quotes += 1

    return QuoterConfig, QuoteEvery100ms


def nautilus_result(raw: Path = RAW) -> NautilusResult:
    t = time.perf_counter()
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.backtest.models import FillModel, LatencyModel
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    import_s = time.perf_counter() - t
    instrument = TestInstrumentProvider.btcusdt_perp_binance()

    t = time.perf_counter()
    data, messages = convert(raw, instrument.id)
    convert_s = time.perf_counter() - t

    t = time.perf_counter()
    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BENCH-001"),
            # Its matching engine logs an ERROR for each trade-driven fill the L2 book cannot
            # back; those are expected here and would drown the table.
            logging=LoggingConfig(bypass_logging=True),
        )
    )
    engine.add_venue(
        venue=Venue("BINANCE"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=None,
        starting_balances=[Money(1_000_000, USDT)],
        book_type=BookType.L2_MBP,
        latency_model=LatencyModel(base_latency_nanos=LATENCY_NS),
        fill_model=FillModel(prob_fill_on_limit=1.0, random_seed=42),
        trade_execution=True,
    )
    engine.add_instrument(instrument)
    engine.add_data(data)
    config_cls, strategy_cls = _strategy_classes()
    strategy = strategy_cls(config_cls(instrument_id=instrument.id))
    engine.add_strategy(strategy)
    setup_s = time.perf_counter() - t

    t = time.perf_counter()
    engine.run()
    run_s = time.perf_counter() - t

    fills = engine.trader.generate_fills_report()
    position = float(engine.portfolio.net_position(instrument.id))
    realized = engine.portfolio.realized_pnl(instrument.id)
    unrealized = engine.portfolio.unrealized_pnl(instrument.id)
    fees = 0.0
    if len(fills):
        fees = float(fills["commission"].map(lambda m: float(str(m).split()[0])).sum())
    pnl = float(realized or 0) + float(unrealized or 0)
    engine.dispose()
    return NautilusResult(
        name="nautilus_trader",
        raw_messages=messages,
        events=len(data),
        import_s=import_s,
        convert_s=convert_s,
        setup_s=setup_s,
        run_s=run_s,
        quotes=strategy.quotes,
        trades=len(fills),
        position=position,
        fees=fees,
        pnl=pnl,
    )


def print_result(r: NautilusResult) -> None:
    print(f"nautilus_trader on {RAW.name}: {r.raw_messages:,} raw messages -> {r.events:,} events")
    print(
        f"  import {r.import_s:6.2f} s   convert {r.convert_s:6.2f} s   "
        f"setup {r.setup_s:6.2f} s   run {r.run_s:6.2f} s"
    )
    print(f"  convert + run {r.convert_run_s:.2f} s = {r.messages_per_s:,.0f} raw messages/s")
    print(
        f"  {r.quotes:,} orders placed, {r.trades:,} fills, position {r.position:+.3f}, "
        f"fees {r.fees:.4f}, PnL {r.pnl:+.4f} USDT"
    )


if __name__ == "__main__":
    if not RAW.exists():
        sys.exit(f"no recording at {RAW}")
    print_result(nautilus_result())
