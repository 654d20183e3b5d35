"""The sweep table's figures are the report's: ``fill_ratio`` is fills / orders placed."""

from __future__ import annotations

from pathlib import Path

from makerflow.backtest.summary import headline
from makerflow.operators.ticks import book_tick
from makerflow.reports.frames import load_run
from makerflow.reports.summary import compute
from makerflow.schemas.codec import encode
from makerflow.schemas.events import Fill, OrderIntent

S = 1_000_000_000


def _write(path: Path, events: list[object]) -> None:
    path.write_bytes(b"".join(encode(e) + b"\n" for e in events))


def test_the_headline_fill_ratio_is_the_reports_fills_per_order_placed(tmp_path: Path) -> None:
    m = {"venue": "binance", "symbol": "BTC/USDT"}
    places = [
        OrderIntent(
            ts=i * S, **m, action="place", client_order_id=f"mf-{i}", side="buy", price=99.0, qty=1
        )
        for i in (1, 2)
    ]
    # Three partial fills of one order; the other order never fills.
    fills = [
        Fill(ts=(3 + k) * S, **m, trade_id=f"t{k}", client_order_id="mf-1", side="buy",
             price=99.0, qty=1 / 3, fee=0.01, fee_asset="USDT")
        for k in range(3)
    ]  # fmt: skip
    ticks = [book_tick("binance", "BTC/USDT", t * S, 100.0, 1.0, 100.2, 1.0) for t in (1, 7)]
    _write(tmp_path / "intents.jsonl", places)
    _write(tmp_path / "fills.jsonl", fills)
    _write(tmp_path / "ticks.jsonl", ticks)
    h = headline(tmp_path)
    [row] = compute(load_run(tmp_path)).headline().values()
    assert h["fill_ratio"] == row["fill_ratio"] == 3 / 2
    assert h["filled_order_share"] == row["filled_order_share"] == 1 / 2
    assert (h["orders"], h["fills"]) == (2, 3)
    assert abs(h["pnl"] - row["total_pnl"]) < 1e-12
    # Bought 1 at 99 for 0.03 fees, marked at the last mid 100.1.
    assert abs(h["pnl"] - (100.1 - 99.0 - 0.03)) < 1e-9
