"""The demo's progress line: what the run has done so far, while it runs.

:class:`Progress` is the tally (pure: the dataflow's inspectors feed it events, the line is a
function of what it was fed and the elapsed time it is given). :class:`ProgressPrinter` is the
edge: a thread that redraws the line in place on a terminal (``\\r``) and writes a plain line
every few seconds otherwise (a log file, CI).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from makerflow.schemas.events import Fill, RiskState, Tick

MARKET_SCOPE = "market:binance:BTC/USDT"


class Progress:
    """Counts of the run so far; inventory and PnL of the traded market, marked at its mid."""

    def __init__(self, total_s: float, lot_decimals: int = 5) -> None:
        self.total_s = total_s
        self.lot_decimals = lot_decimals
        self.events = 0
        self.quotes = 0
        self.fills = 0
        self.inventory = 0.0
        self.cash = 0.0
        self.mid: float | None = None
        self.risk = "-"
        self._seen_fills: set[str] = set()
        self._scopes: dict[str, str] = {}
        self._lock = threading.Lock()
        self.started_at: float | None = None
        """Monotonic time the run started (the market's first moment); None: setting up."""

    def start(self) -> None:
        self.started_at = time.monotonic()

    def elapsed(self, now: float) -> float:
        return 0.0 if self.started_at is None else now - self.started_at

    def on_event(self, _x: Any = None) -> None:
        with self._lock:
            self.events += 1

    def on_tick(self, tick: Tick) -> None:
        with self._lock:
            self.events += 1
            if tick.venue == "binance" and tick.symbol == "BTC/USDT" and tick.mid:
                self.mid = tick.mid

    def on_ladder(self, _ladder: Any) -> None:
        with self._lock:
            self.quotes += 1

    def on_fill(self, fill: Fill) -> None:
        with self._lock:
            if fill.trade_id in self._seen_fills:  # the private stream may repeat a fill
                return
            self._seen_fills.add(fill.trade_id)
            self.fills += 1
            sign = 1.0 if fill.side == "buy" else -1.0
            self.inventory += sign * fill.qty
            self.cash -= sign * fill.qty * fill.price
            # The venue takes its fee in the asset received: BTC on a buy, USDT on a sell.
            if fill.fee and fill.fee_asset == "USDT":
                self.cash -= fill.fee
            elif fill.fee and fill.fee_asset == "BTC":
                self.inventory -= fill.fee

    def on_risk(self, state: RiskState) -> None:
        with self._lock:
            self._scopes[state.scope] = state.status
            halted = sorted(s for s, v in self._scopes.items() if v == "HALTED")
            if halted:
                market = [h for h in halted if h == MARKET_SCOPE]
                more = len(halted) - 1
                self.risk = f"HALTED {(market or halted)[0]}" + (f" +{more}" if more else "")
            else:
                self.risk = self._scopes.get(MARKET_SCOPE, "-")

    def line(self, elapsed_s: float) -> str:
        with self._lock:
            pnl = "-" if self.mid is None else f"{self.cash + self.inventory * self.mid:+,.2f}"
            inv = f"{self.inventory:+.{self.lot_decimals}f}"
            return (
                f"{min(elapsed_s, self.total_s):5.0f}/{self.total_s:.0f}s"
                f" | ticks {self.events:,} | quotes {self.quotes:,} | fills {self.fills}"
                f" | inventory {inv} BTC | PnL {pnl} USDT | risk {self.risk}"
            )


class ProgressPrinter(threading.Thread):
    """Shows :meth:`Progress.line` every ``every_s`` seconds on a terminal (in place), every
    ``plain_every_s`` seconds as a new line elsewhere; :meth:`stop` writes the last one."""

    def __init__(
        self,
        progress: Progress,
        stream: TextIO | None = None,
        *,
        every_s: float = 0.5,
        plain_every_s: float = 10.0,
    ) -> None:
        super().__init__(name="demo-progress", daemon=True)
        self.progress = progress
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every_s = every_s if self.tty else plain_every_s
        self._stop_event = threading.Event()

    def _write(self, final: bool = False) -> None:
        if self.progress.started_at is None:
            text = "setting up the local exchange and chain..."
        else:
            text = self.progress.line(self.progress.elapsed(time.monotonic()))
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self._write()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self._write(final=True)
