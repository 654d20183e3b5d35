"""Fault injection for the local exchange: the next N matching requests answer 429, 5xx, time
out, or report insufficient funds, so tests can show what a client does when the venue does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["rate_limit", "server_error", "unavailable", "timeout", "insufficient_funds"]


@dataclass
class Fault:
    """One injected failure.

    ``after``: the request is processed first (an order is placed) and only the answer fails;
    that is the case that makes a naive retry place the same order twice.
    ``delay_s``: how long a ``timeout`` holds the answer back before giving it.
    """

    kind: FaultKind
    count: int = 1
    method: str | None = None
    path: str | None = None
    after: bool = False
    delay_s: float = 2.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            self.path is None or self.path == path
        )


class FaultPlan:
    """A queue of faults; each request takes (and uses up) the first one that matches."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.injected = 0

    def add(self, fault: Fault) -> None:
        if fault.count < 1:
            raise ValueError(f"a fault needs count >= 1, got {fault.count}")
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def pending(self) -> int:
        return sum(f.count for f in self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        for i, f in enumerate(self._faults):
            if f.matches(method, path):
                f.count -= 1
                if f.count == 0:
                    del self._faults[i]
                self.injected += 1
                return f
        return None


class TokenBucket:
    """The venue's own request limit (Binance's ORDERS limit): ``rate`` per second with bursts
    up to ``burst``. Time comes from the caller (the HTTP edge's clock), never from here."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None
        self.refused = 0

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False
