"""A configuration error stops a service before it starts anything: run under the Bytewax
runner as in production, it exits with status 2 and one line naming the table and the key,
no traceback, without having tried Kafka (the brokers here answer nothing: a service that
went on would say "cannot reach Kafka"), served metrics or sent an order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from makerflow.broker import free_port
from makerflow.cli import main as cli_main
from tests.conftest import REPO
from tests.unit.test_config_errors import SHARED

pytestmark = pytest.mark.slow


CASES = {
    "unknown key": (
        "execution",
        ("align_ms = 50", "alig_ms = 50"),
        {},
        "[ticks] alig_ms: unknown key (did you mean align_ms?)",
    ),
    "wrong type": ("quoter", ("window_ms = 60000", 'window_ms = "1m"'), {}, "[risk] window_ms"),
    "missing market": (
        "execution",
        ('symbols = ["BTC/USDT"]', 'symbols = ["ETH/USDT"]'),
        {},
        "[quoting] markets[0] (binance:BTC/USDT, account main): missing from [execution]",
    ),
    "a market restated against the registry": (
        "risk",
        (
            "[ticks]\n",
            '[[markets]]\nvenue = "binance"\nsymbol = "BTC/USDT"\ntick_size = 0.5\n'
            'lot_size = 0.00001\nindex_basket = "BTC"\n\n[ticks]\n',
        ),
        {},
        "[quoting] markets[0].tick_size: 0.01 disagrees with the [[markets]] registry's"
        " binance:BTC/USDT tick_size = 0.5",
    ),
    "a market missing from the registry": (
        "execution",
        (
            "[ticks]\n",
            '[[markets]]\nvenue = "binance"\nsymbol = "ETH/USDT"\ntick_size = 0.01\n'
            "lot_size = 0.0001\n\n[ticks]\n",
        ),
        {},
        "[quoting] markets[0]: market binance:BTC/USDT is not in the [[markets]] registry",
    ),
    "wrong type from the environment": (
        "ticks",
        None,
        {"MAKERFLOW__TICKS__ALIGN_MS": "soon"},
        "(set by MAKERFLOW__TICKS__ALIGN_MS)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_configuration_error_starts_nothing(case: str, tmp_path: Path) -> None:
    service, edit, extra_env, message = CASES[case]
    text = SHARED if edit is None else SHARED.replace(edit[0], edit[1], 1)
    cfg = tmp_path / "makerflow.toml"
    cfg.write_text(text)
    metrics_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MAKERFLOW_CONFIG": str(cfg),
        "MAKERFLOW_BROKERS": f"127.0.0.1:{free_port()}",
        "MAKERFLOW_METRICS_PORT": str(metrics_port),
        **extra_env,
    }
    out = subprocess.run(
        [sys.executable, "-m", "bytewax.run", f"makerflow.flows.{service}:flow"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert message in err, err
    assert f"{service} not started" in err
    assert "Traceback" not in err
    assert "cannot reach Kafka" not in err  # it never got as far as Kafka
    assert len(err.strip().splitlines()) == 1, err


def test_makerflow_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The CLI's own entry point in this process: two interpreter start-ups saved, the same
    # parsing, checking and exit codes as `makerflow config check`.
    cfg = tmp_path / "makerflow.toml"
    cfg.write_text(SHARED)
    assert cli_main(["config", "check", "--config", str(cfg)]) == 0, capsys.readouterr().err
    assert "ticks, index, quoting, risk, execution" in capsys.readouterr().out
    cfg.write_text(SHARED.replace("[risk]", "[rsik]"))
    assert cli_main(["config", "check", "--config", str(cfg)]) == 2
    assert "unknown table [rsik]" in capsys.readouterr().err
