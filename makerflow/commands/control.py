"""``makerflow control halt|resume|set``: a ControlCommand on the ``control`` topic.

Risk never resumes a halted scope on its own; this command is how a person does (signed
with the key in ``MAKERFLOW_CONTROL_KEY_FILE`` or ``MAKERFLOW_CONTROL_KEY``; a resume must
say why)::

    makerflow control halt   --scope market:binance:BTC/USDT --reason "exchange incident"
    makerflow control resume --scope market:binance:BTC/USDT --reason "checked the move"
    makerflow control set    --scope asset:BTC --param max_long=2.5
"""

from __future__ import annotations

import argparse
import getpass
import os
import time
from typing import Any

from makerflow.kafka_admin import ensure_topics, produce_events
from makerflow.operators.control_auth import KEY_ENV, KEY_FILE_ENV, ControlKey, sign
from makerflow.schemas.events import ControlCommand
from makerflow.schemas.scopes import validate_scope
from makerflow.schemas.topics import CONTROL

ParamValue = float | int | str | bool

_VERBS = {"halt": "halt", "resume": "resume", "set": "set_params"}


def parse_param(text: str) -> tuple[str, ParamValue]:
    """``k=v`` with ``v`` read as a bool, an int, a float or else a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"bad --param {text!r}: write it as name=value")
    raw = raw.strip()
    value: ParamValue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return name, value


def build_command(
    verb: str,
    scope: str,
    *,
    ts: int,
    reason: str = "",
    params: list[str] | None = None,
    issued_by: str = "",
) -> ControlCommand:
    """The ControlCommand for ``verb`` (``halt``, ``resume`` or ``set``); ValueError if bad."""
    if verb not in _VERBS:
        raise ValueError(f"unknown control verb {verb!r}: use halt, resume or set")
    validate_scope(scope)
    parsed = dict(parse_param(p) for p in params or [])
    if verb == "set" and not parsed:
        raise ValueError("control set needs at least one --param name=value")
    if verb == "resume" and not reason.strip():
        raise ValueError("control resume needs --reason: say why it is safe to trade again")
    if verb != "set" and parsed:
        raise ValueError(f"--param only goes with control set, not {verb}")
    return ControlCommand(
        ts=ts,
        command=_VERBS[verb],  # type: ignore[arg-type]
        scope=scope,
        params=parsed,
        issued_by=issued_by,
        reason=reason,
    )


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "control", help="halt, resume or set risk parameters of a scope (control topic)"
    )
    p.add_argument("verb", choices=sorted(_VERBS), help="what to do")
    p.add_argument(
        "--scope",
        required=True,
        help="global, account:<name>, asset:<ASSET> or market:<venue>:<symbol>",
    )
    p.add_argument("--reason", default="", help="why, for the audit trail and the alert")
    p.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="a limit to set (repeat)"
    )
    p.add_argument(
        "--brokers",
        default=os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $MAKERFLOW_BROKERS or 127.0.0.1:9092)",
    )
    p.add_argument("--issued-by", default="", help="who (default: the login name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        who = args.issued_by or getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    try:
        cmd = build_command(
            args.verb,
            args.scope,
            # The command's event time is when the person issued it: this is an edge.
            ts=time.time_ns(),
            reason=args.reason,
            params=args.param,
            issued_by=who,
        )
    except ValueError as exc:
        print(f"makerflow control: {exc}")
        return 2
    try:
        key = ControlKey.load()
    except (OSError, ValueError) as exc:
        print(f"makerflow control: cannot read the control key: {exc}")
        return 2
    if key is None:
        print(f"makerflow control: no control key: set {KEY_FILE_ENV} (a file) or {KEY_ENV}")
        return 2
    cmd = sign(cmd, key)
    brokers = [b for b in args.brokers.split(",") if b]
    ensure_topics(brokers, [CONTROL.name])
    produce_events(brokers, CONTROL, [cmd])
    print(f"sent {cmd.command} for {cmd.scope} to {CONTROL.name} on {','.join(brokers)}")
    return 0
