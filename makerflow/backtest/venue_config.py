"""The simulated venue's settings (the ``[venue]`` table of a backtest's TOML) and the latency
draws they describe: a constant, or recorded samples drawn with a seed so runs repeat exactly."""

from __future__ import annotations

import math
import random
from typing import Literal

from makerflow.schemas.config import Config

NS_PER_MS = 1_000_000

QueueModel = Literal["proportional", "risk_averse", "front"]


DEFAULT_TAKER_FEE = 0.0005


class VenueConfig(Config, frozen=True, kw_only=True):
    """The simulated venue's settings (the ``[venue]`` table of a backtest's TOML)."""

    entry_latency_ms: float = 5.0
    """Order entry: from our send to the venue."""
    cancel_latency_ms: float = 5.0
    """Cancel: from our send to the venue; the order can fill meanwhile."""
    report_latency_ms: float = 5.0
    """From the venue's action (ack, fill, cancel) to our private stream."""
    entry_latency_samples_ms: tuple[float, ...] = ()
    """A recorded distribution of entry latencies to draw from (seeded); empty: the constant."""
    cancel_latency_samples_ms: tuple[float, ...] = ()
    report_latency_samples_ms: tuple[float, ...] = ()
    seed: int = 0
    queue_model: QueueModel = "proportional"
    maker_fee: float | None = None
    """Fee rate of a maker fill (negative: a rebate), on its notional, in the quote asset;
    ``None``: the quoted market's ``maker_fee_bps`` (the fee the quoter is told it pays)."""
    taker_fee: float | None = None
    """Fee rate of a taker fill; ``None``: the market registry's ``taker_fee_bps`` when it
    states one, else 5 bps (:attr:`taker_rate`)."""
    initial_base: float = 10.0
    """The account's base-asset balance at the start."""
    initial_quote: float = 1_000_000.0
    check_balances: bool = True
    """Refuse an order the account could not pay for (a spot venue does)."""

    @property
    def taker_rate(self) -> float:
        return DEFAULT_TAKER_FEE if self.taker_fee is None else self.taker_fee

    def __post_init__(self) -> None:
        for name in ("entry_latency_ms", "cancel_latency_ms", "report_latency_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
            samples = getattr(self, name.replace("_ms", "_samples_ms"))
            if any(not (math.isfinite(s) and s >= 0) for s in samples):
                raise ValueError(f"{name.replace('_ms', '_samples_ms')} must be >= 0 ms")


class Latency:
    """A constant latency, or draws (with replacement) from recorded samples with a seed."""

    def __init__(self, constant_ms: float, samples_ms: tuple[float, ...], seed: str) -> None:
        self.constant_ns = round(constant_ms * NS_PER_MS)
        self.samples_ns = tuple(round(s * NS_PER_MS) for s in samples_ms)
        # A string seed is hashed with SHA-512 by random.Random: the same on every run and
        # in every process (unlike hash()).
        self.rng = random.Random(seed)

    def draw(self) -> int:
        if not self.samples_ns:
            return self.constant_ns
        return self.samples_ns[self.rng.randrange(len(self.samples_ns))]
