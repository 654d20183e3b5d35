"""Authenticated control: every command on the ``control`` topic is signed.

A command is signed with HMAC-SHA256 over its canonical bytes (its JSON with an empty
``signature``), under a key shared by the people's tool (``makerflow control``) and the
services, read from ``MAKERFLOW_CONTROL_KEY_FILE`` (a file) or ``MAKERFLOW_CONTROL_KEY``.
The command carries its time (``ts``) and a ``nonce``. A service applies a command only when
it is signed with the key, not older than ``max_age_s`` (wall clock, read at the edge and
handed in), and its nonce was not seen before; anything else changes nothing, goes to the
dead letters with the reason, is counted (``makerflow_control_refused_total{reason}``) and
raises a ``ControlCommandRefused`` alert.

:class:`ControlVerifier` is pure (the time comes in as an argument); :func:`verified_control`
is the Bytewax operator every flow that reads ``control`` puts in front of risk and quoting,
so the check is made once, in one place, whatever reads the commands after it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream, operator

from makerflow import metrics
from makerflow.schemas.codec import dead_letter, encode
from makerflow.schemas.events import Alert, ControlCommand, DeadLetter
from makerflow.schemas.markers import InputEnded

KEY_ENV = "MAKERFLOW_CONTROL_KEY"
KEY_FILE_ENV = "MAKERFLOW_CONTROL_KEY_FILE"
NS = 1_000_000_000


class ControlKey:
    """The HMAC key; never shown (``repr`` and ``str`` mask it)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the control key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "ControlKey(***)"

    __str__ = __repr__

    def mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ControlKey | None:
        """The key from ``$MAKERFLOW_CONTROL_KEY_FILE`` (wins) or ``$MAKERFLOW_CONTROL_KEY``;
        ``None`` when neither is set (then every command is refused)."""
        e = os.environ if env is None else env
        path = e.get(KEY_FILE_ENV)
        if path:
            return cls(Path(path).read_bytes().strip())
        raw = e.get(KEY_ENV)
        return cls(raw.encode()) if raw else None


def canonical(cmd: ControlCommand) -> bytes:
    """The bytes a signature covers: the command's JSON with an empty signature."""
    return encode(msgspec.structs.replace(cmd, signature=""))


def sign(cmd: ControlCommand, key: ControlKey, nonce: str | None = None) -> ControlCommand:
    """``cmd`` with a fresh nonce (unless given) and its signature."""
    unsigned = msgspec.structs.replace(cmd, nonce=nonce or secrets.token_hex(16), signature="")
    return msgspec.structs.replace(unsigned, signature=key.mac(canonical(unsigned)))


@dataclass
class ControlVerifier:
    """Checks signature, age and nonce; remembers the nonces of the last ``max_age_s``."""

    key: ControlKey | None
    max_age_s: float = 300.0
    max_future_s: float = 30.0
    seen: OrderedDict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.seen is None:
            self.seen = OrderedDict()

    def check(self, cmd: ControlCommand, now_ns: int) -> tuple[str, str] | None:
        """``None`` to apply ``cmd``, else ``(reason class, message)``."""
        assert self.seen is not None
        if self.key is None:
            return "no_key", f"no control key configured (set {KEY_FILE_ENV} or {KEY_ENV})"
        if not cmd.signature:
            return "unsigned", "unsigned control command"
        if not hmac.compare_digest(cmd.signature, self.key.mac(canonical(cmd))):
            return "bad_signature", "control command signature does not match"
        age = (now_ns - cmd.ts) / NS
        if age > self.max_age_s:
            return "stale", f"control command is {age:.0f}s old (max {self.max_age_s:g}s)"
        if -age > self.max_future_s:
            return "stale", f"control command is {-age:.0f}s in the future"
        if not cmd.nonce:
            return "unsigned", "control command has no nonce"
        if cmd.nonce in self.seen:
            return "replayed", f"control command nonce {cmd.nonce} was already used"
        self.seen[cmd.nonce] = cmd.ts
        horizon = now_ns - int((self.max_age_s + self.max_future_s) * NS)
        while self.seen and next(iter(self.seen.values())) < horizon:
            self.seen.popitem(last=False)
        return None


@dataclass(frozen=True)
class VerifiedControl:
    oks: Stream[ControlCommand]
    """Commands signed with the key, fresh and never seen before."""
    errs: Stream[DeadLetter]
    alerts: Stream[Alert]
    """``ControlCommandRefused`` (warning) for every refused command."""


class _VerifyLogic(op.StatefulLogic[ControlCommand, Any, tuple[tuple[str, int], ...]]):
    def __init__(
        self,
        step: str,
        key: ControlKey | None,
        max_age_s: float,
        clock: Callable[[], int],
        resume: tuple[tuple[str, int], ...] | None,
    ) -> None:
        self.step = step
        self.clock = clock
        self.verifier = ControlVerifier(key, max_age_s, seen=OrderedDict(resume or ()))

    def on_item(self, value: ControlCommand) -> tuple[Iterable[Any], bool]:
        if type(value) is InputEnded:  # a bounded replay's end of a partition: pass it on
            return (value,), op.StatefulLogic.RETAIN
        problem = self.verifier.check(value, self.clock())
        if problem is None:
            return (value,), op.StatefulLogic.RETAIN
        kind, message = problem
        metrics.CONTROL_REFUSED.labels(reason=kind).inc()
        metrics.DEAD_LETTERS.labels(step=self.step).inc()
        # The signature is left out of the alert: it is not a secret, but it is noise.
        who = value.issued_by or "?"
        alert = Alert(
            ts=value.ts,
            name="ControlCommandRefused",
            severity="warning",
            scope=value.scope,
            message=f"refused {value.command} of {value.scope} by {who}: {message}",
            labels={"reason": kind, "command": value.command},
        )
        dl = dead_letter(self.step, f"{kind}: {message}", encode(value), ts=value.ts)
        return (dl, alert), op.StatefulLogic.RETAIN

    def snapshot(self) -> tuple[tuple[str, int], ...]:
        assert self.verifier.seen is not None
        return tuple(self.verifier.seen.items())


def _command_or_end(x: Any) -> Any:
    return x if isinstance(x, ControlCommand | InputEnded) else None


@operator
def verified_control(
    step_id: str,
    control: Stream[ControlCommand],
    key: ControlKey | None,
    max_age_s: float = 300.0,
    clock: Callable[[], int] = time.time_ns,
) -> VerifiedControl:
    """Only signed, fresh, never-seen commands pass; the rest are dead letters and alerts.

    One key for the whole stream, so a nonce is remembered across workers. ``clock`` reads
    the wall clock (an edge's reading, for the age check only)."""
    keyed = op.key_on("one_key", control, lambda _c: "control")
    out = op.key_rm(
        "unkey",
        op.stateful(
            "verify", keyed, lambda resume: _VerifyLogic(step_id, key, max_age_s, clock, resume)
        ),
    )
    return VerifiedControl(
        # A bounded replay's end markers go on with the commands (see operators/merge_logic).
        oks=op.filter_map("oks", out, _command_or_end),
        errs=op.filter_map("errs", out, lambda x: x if isinstance(x, DeadLetter) else None),
        alerts=op.filter_map("alerts", out, lambda x: x if isinstance(x, Alert) else None),
    )
