"""Signed control commands: what passes, what is refused and why, and the key never shows."""

from __future__ import annotations

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from makerflow.commands.control import build_command
from makerflow.operators.control_auth import (
    ControlKey,
    ControlVerifier,
    sign,
    verified_control,
)
from makerflow.schemas.events import ControlCommand

NS = 1_000_000_000
NOW = 1_723_161_254 * NS
KEY = ControlKey(b"0123456789abcdef-test-key")
SCOPE = "market:binance:BTC/USDT"


def resume(ts: int = NOW, **kw) -> ControlCommand:
    return build_command("resume", SCOPE, ts=ts, reason="checked", issued_by="alice", **kw)


def test_signed_fresh_new_commands_pass_and_everything_else_is_refused_with_a_reason():
    v = ControlVerifier(KEY, max_age_s=60)
    good = sign(resume(), KEY)
    assert v.check(good, NOW + NS) is None
    assert v.check(good, NOW + 2 * NS)[0] == "replayed"  # the same command again
    assert v.check(resume(), NOW)[0] == "unsigned"
    other = sign(resume(), ControlKey(b"another-key-of-16-bytes"))
    assert v.check(other, NOW)[0] == "bad_signature"
    tampered = msgspec.structs.replace(sign(resume(), KEY), scope="global")
    assert v.check(tampered, NOW)[0] == "bad_signature"
    old = sign(resume(ts=NOW - 120 * NS), KEY)
    assert v.check(old, NOW) == ("stale", "control command is 120s old (max 60s)")
    assert ControlVerifier(None).check(good, NOW)[0] == "no_key"


def test_the_key_is_never_shown_and_loads_from_a_file_or_the_environment(tmp_path):
    assert "0123" not in repr(KEY) and "0123" not in str(KEY)
    f = tmp_path / "control.key"
    f.write_text("file-key-0123456789\n")
    k = ControlKey.load({"MAKERFLOW_CONTROL_KEY_FILE": str(f), "MAKERFLOW_CONTROL_KEY": "x" * 20})
    assert k is not None and k.mac(b"a") == ControlKey(b"file-key-0123456789").mac(b"a")
    assert ControlKey.load({}) is None


def test_the_operator_passes_good_commands_and_dead_letters_and_alerts_the_rest():
    good = sign(resume(), KEY)
    cmds = [good, resume(), good, sign(resume(ts=NOW - 3_600 * NS), KEY)]
    flow = Dataflow("control_auth")
    out = verified_control(
        "auth", op.input("in", flow, TestingSource(cmds)), KEY, clock=lambda: NOW
    )
    oks, errs, alerts = [], [], []
    op.output("oks", out.oks, TestingSink(oks))
    op.output("errs", out.errs, TestingSink(errs))
    op.output("alerts", out.alerts, TestingSink(alerts))
    run_main(flow)
    assert oks == [good]
    assert [e.reason.split(":")[0] for e in errs] == ["unsigned", "replayed", "stale"]
    assert all(a.name == "ControlCommandRefused" and a.severity == "warning" for a in alerts)
    assert [a.labels["reason"] for a in alerts] == ["unsigned", "replayed", "stale"]
