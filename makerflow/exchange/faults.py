"""Fault injection for the local exchange: what a live venue does to a client, on demand.

Two families, both taken from one :class:`FaultPlan`:

* **request faults** hit the next matching REST request: ``rate_limit`` (429 with
  ``Retry-After``), ``ban`` (418 with ``Retry-After``, Binance's answer to a client that keeps
  going after 429s), ``server_error`` (500), ``unavailable`` (503), ``timeout`` (the answer is
  held ``delay_s`` then 504), ``insufficient_funds``, ``lost`` (the request is processed, then
  the connection drops without an answer), ``late`` (the request waits ``delay_s`` *before* it
  is processed, so a client that timed out and looked the order up found nothing, and the
  order appears afterwards) and ``expire`` (the order is placed, then the venue expires it on
  its own after ``delay_s``). With ``after=True`` the error kinds process the request first:
  the order exists though the client saw a failure.
* **event faults** hit the next matching private (user data stream) event:
  ``duplicate_event`` (delivered again ``delay_s`` later), ``reorder_event`` (held back
  until ``hold`` later order reports of the account went out, or ``delay_s`` passed) and
  ``stream_disconnect``
  (the account's user data sockets are closed and every event of the next ``gap_s`` seconds
  is lost; a reconnect does not replay them, only REST queries show what happened).

:meth:`FaultPlan.chaos` adds a seeded mix of these at a steady rate. Everything injected is
counted per kind (:attr:`FaultPlan.injected_by_kind`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

RequestFaultKind = Literal[
    "rate_limit",
    "ban",
    "server_error",
    "unavailable",
    "timeout",
    "insufficient_funds",
    "lost",
    "late",
    "expire",
]
EventFaultKind = Literal["duplicate_event", "reorder_event", "stream_disconnect"]
FaultKind = RequestFaultKind | EventFaultKind

REQUEST_KINDS: frozenset[str] = frozenset(get_args(RequestFaultKind))
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventFaultKind))

ORDER_PATHS = ("/api/v3/order", "/api/v3/openOrders")
"""The endpoints that change orders (POST/DELETE): where the chaos mix strikes requests."""


@dataclass
class Fault:
    """One injected failure (see the module docstring for the kinds).

    ``method``/``path``: which requests it hits (``None`` = any); ``exec_type``: which
    private events (an ``executionReport``'s ``x``: ``NEW``, ``TRADE``, ``CANCELED``,
    ``EXPIRED``; ``None`` = any executionReport; balance events are never targeted).
    ``after``: process the request first, then fail the answer (error kinds).
    ``delay_s``: ``timeout``: how long the answer is held; ``late``: how long the request waits
    before it is processed; ``lost``: how long before the connection drops; ``expire``: how
    long the order lives before the venue expires it; ``reorder_event``: the longest an event
    is held back; ``duplicate_event``: how much later the copy follows.
    ``retry_after_s``: the ``Retry-After`` of ``rate_limit``/``ban``;
    ``enforce``: keep refusing every matching request until ``Retry-After`` has passed (a
    429 burst for a client that does not wait). ``hold``: how many later order reports
    overtake a reordered event. ``gap_s``: how long a ``stream_disconnect`` loses events.
    """

    kind: FaultKind
    count: int = 1
    method: str | None = None
    path: str | None = None
    after: bool = False
    delay_s: float = 2.0
    retry_after_s: int = 1
    enforce: bool = False
    exec_type: str | None = None
    hold: int = 1
    gap_s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in REQUEST_KINDS and self.kind not in EVENT_KINDS:
            known = ", ".join(sorted(REQUEST_KINDS | EVENT_KINDS))
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {known}")
        if self.count < 1:
            raise ValueError(f"a fault needs count >= 1, got {self.count}")
        if self.retry_after_s < 0 or self.delay_s < 0 or self.gap_s < 0 or self.hold < 1:
            raise ValueError(f"a fault's times must be >= 0 and hold >= 1: {self}")

    @property
    def on_events(self) -> bool:
        return self.kind in EVENT_KINDS

    @property
    def label(self) -> str:
        """The name it is counted under: the kind, ``_after`` when the request went through."""
        return (
            f"{self.kind}_after" if self.after and self.kind not in ("lost", "late") else self.kind
        )

    def matches(self, method: str, path: str) -> bool:
        return (
            not self.on_events
            and (self.method is None or self.method.upper() == method.upper())
            and (self.path is None or self.path == path)
        )

    def matches_event(self, event: Mapping[str, Any]) -> bool:
        return (
            self.on_events
            and event.get("e") == "executionReport"
            and (self.exec_type is None or event.get("x") == self.exec_type)
        )


CHAOS_KINDS: tuple[str, ...] = (
    "lost",
    "late",
    "server_error_after",
    "unavailable",
    "rate_limit",
    "ban",
    "expire",
    "duplicate_event",
    "reorder_event",
    "stream_disconnect",
)
"""What :meth:`FaultPlan.chaos` mixes by default (labels as counted)."""


@dataclass(frozen=True)
class ChaosConfig:
    """A steady, seeded mix of faults: every order request (POST/DELETE on
    :data:`ORDER_PATHS`) and every private order report is struck with probability ``rate``
    by one kind drawn uniformly from those of ``kinds`` that apply to it.

    ``client_timeout_s``: the client's request timeout; a ``late`` request waits a second
    longer than that before it is processed (well inside Binance's default recvWindow).
    """

    rate: float
    seed: int = 0
    kinds: tuple[str, ...] = CHAOS_KINDS
    client_timeout_s: float = 2.0
    lost_after_s: float = 0.2
    expire_after_s: float = 3.0
    retry_after_s: int = 1
    gap_s: float = 1.5
    reorder_hold_s: float = 1.0
    duplicate_after_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"a chaos rate is a probability in [0, 1], got {self.rate}")
        unknown = set(self.kinds) - set(CHAOS_KINDS) - {"timeout", "server_error"}
        if unknown:
            raise ValueError(f"unknown chaos kinds {sorted(unknown)}; known: {CHAOS_KINDS}")

    def fault(self, label: str) -> Fault:
        """The fault a chaos label stands for."""
        after = label.endswith("_after")
        kind = label.removesuffix("_after")
        base = Fault(kind, after=after)  # type: ignore[arg-type]
        if kind == "late":
            return replace(base, delay_s=self.client_timeout_s + 1.0)
        if kind == "lost":
            return replace(base, delay_s=self.lost_after_s)
        if kind == "timeout":
            return replace(base, delay_s=self.client_timeout_s + 0.5)
        if kind == "expire":
            return replace(base, delay_s=self.expire_after_s)
        if kind in ("rate_limit", "ban"):
            return replace(base, retry_after_s=self.retry_after_s, enforce=True)
        if kind == "stream_disconnect":
            return replace(base, gap_s=self.gap_s)
        if kind == "reorder_event":
            return replace(base, delay_s=self.reorder_hold_s)
        if kind == "duplicate_event":
            return replace(base, delay_s=self.duplicate_after_s)
        return base


def _applies(label: str, method: str, path: str) -> bool:
    kind = label.removesuffix("_after")
    if kind in EVENT_KINDS:
        return False
    if kind == "expire":
        return method == "POST" and path == "/api/v3/order"
    return True


@dataclass
class FaultPlan:
    """A queue of faults (each request or event takes, and uses up, the first that matches)
    plus an optional chaos mix; counts what it injected."""

    _faults: list[Fault] = field(default_factory=list)
    chaos_config: ChaosConfig | None = None
    injected_by_kind: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def chaos(
        cls,
        rate: float,
        seed: int = 0,
        kinds: tuple[str, ...] | None = None,
        **params: Any,
    ) -> FaultPlan:
        """A plan that strikes order requests and private order reports at ``rate`` with a
        seeded mix of ``kinds`` (default :data:`CHAOS_KINDS`); ``params`` go to
        :class:`ChaosConfig`."""
        plan = cls()
        plan.set_chaos(ChaosConfig(rate, seed, kinds or CHAOS_KINDS, **params))
        return plan

    def set_chaos(self, config: ChaosConfig | None) -> None:
        self.chaos_config = config
        self._rng = random.Random(config.seed if config else 0)

    @property
    def injected(self) -> int:
        return sum(self.injected_by_kind.values())

    def add(self, fault: Fault) -> None:
        if fault.count < 1:
            raise ValueError(f"a fault needs count >= 1, got {fault.count}")
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()
        self.set_chaos(None)

    def pending(self) -> int:
        return sum(f.count for f in self._faults)

    def _use(self, i: int) -> Fault:
        f = self._faults[i]
        f.count -= 1
        if f.count == 0:
            del self._faults[i]
        return self._count(f)

    def _count(self, f: Fault) -> Fault:
        self.injected_by_kind[f.label] += 1
        return f

    def _draw(self, labels: list[str]) -> Fault | None:
        chaos = self.chaos_config
        # Always two draws per opportunity, so the sequence depends only on the seed and the
        # number of opportunities, not on which kinds applied.
        strike = self._rng.random()
        pick = self._rng.random()
        if chaos is None or not labels or strike >= chaos.rate:
            return None
        return self._count(chaos.fault(labels[int(pick * len(labels)) % len(labels)]))

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for one REST request, or ``None``."""
        for i, f in enumerate(self._faults):
            if f.matches(method, path):
                return self._use(i)
        chaos = self.chaos_config
        if chaos is None or method.upper() not in ("POST", "DELETE") or path not in ORDER_PATHS:
            return None
        labels = [k for k in chaos.kinds if _applies(k, method.upper(), path)]
        return self._draw(labels)

    def take_event(self, event: Mapping[str, Any]) -> Fault | None:
        """The fault for one private event, or ``None``."""
        for i, f in enumerate(self._faults):
            if f.matches_event(event):
                return self._use(i)
        chaos = self.chaos_config
        if chaos is None or event.get("e") != "executionReport":
            return None
        return self._draw([k for k in chaos.kinds if k in EVENT_KINDS])


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
