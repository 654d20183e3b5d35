"""Configuration: one TOML file for every service plus ``MAKERFLOW__<TABLE>__<KEY>``
environment overrides; each kind of error names the file, the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from makerflow.flows.config_file import check_config
from makerflow.operators.ticks import TicksConfig, load_ticks_config
from makerflow.schemas.config import ConfigError, load_section

SHARED = """
[ticks]
align_ms = 50

[index]
min_venues = 1

[quoting]
id_namespace = "paper-1"
[[quoting.markets]]
venue = "binance"
symbol = "BTC/USDT"
tick_size = 0.01
lot_size = 0.00001
index_basket = "BTC"

[risk]
window_ms = 60000

[execution]
[execution.sink]
venue = "binance"
[execution.private]
symbols = ["BTC/USDT"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "makerflow.toml"
    p.write_text(text)
    return p


def test_a_shared_file_configures_every_service(tmp_path: Path) -> None:
    p = write(tmp_path, SHARED)
    configs = check_config(p, "quoter", env={})
    assert set(configs) == {"ticks", "index", "quoting", "risk", "execution"}
    assert load_ticks_config(p).align_ms == 50


def test_a_table_missing_from_a_shared_file_means_its_defaults(tmp_path: Path) -> None:
    # Found on main: a service whose table was absent read the whole file as its table.
    p = write(tmp_path, "[quoting]\nid_namespace = 'x'\n")
    assert load_section(p, "ticks", TicksConfig, env={}) == TicksConfig()


def test_environment_overrides_a_key(tmp_path: Path) -> None:
    p = write(tmp_path, SHARED)
    env = {"MAKERFLOW__TICKS__ALIGN_MS": "250", "MAKERFLOW__QUOTING__DEFAULTS__GAMMA": "0.01"}
    configs = check_config(p, "ticks", env=env)
    assert configs["ticks"].align_ms == 250  # type: ignore[attr-defined]
    assert configs["quoting"].defaults.gamma == 0.01  # type: ignore[attr-defined]
    # without a file too
    assert load_section(None, "ticks", TicksConfig, env={"MAKERFLOW__TICKS__DEPTH": "7"}).depth == 7


@pytest.mark.parametrize(
    ("edit", "env", "message"),
    [
        # an unknown key: the table, the key, the nearest known key
        (
            ("align_ms = 50", "alig_ms = 50"),
            {},
            r"\[ticks\] alig_ms: unknown key \(did you mean align_ms\?\)",
        ),
        # an unknown key deeper down
        (
            ("min_venues = 1", "min_venues = 1\n[index.rules]\nx = 1"),
            {},
            r"\[index\] rules: unknown key",
        ),
        # an unknown table
        (("[risk]", "[rsik]"), {}, r"unknown table \[rsik\] \(did you mean risk\?\)"),
        # a wrong type
        (
            ("align_ms = 50", 'align_ms = "fast"'),
            {},
            r"\[ticks\] align_ms: expected `int`, got `str`",
        ),
        # a wrong type from the environment, with the variable named
        (
            None,
            {"MAKERFLOW__RISK__WINDOW_MS": "soon"},
            r"\[risk\] window_ms: expected `int`, got `str` \(set by MAKERFLOW__RISK__WINDOW_MS\)",
        ),
        # an unknown key from the environment
        (
            None,
            {"MAKERFLOW__TICKS__ALIGNMENT": "5"},
            r"\[ticks\] alignment: unknown key .*\(set by MAKERFLOW__TICKS__ALIGNMENT\)",
        ),
        # a required key left out
        (("lot_size = 0.00001\n", ""), {}, r"\[quoting\] markets\[0\]\.lot_size: missing"),
        # a value out of range
        (("align_ms = 50", "align_ms = -5"), {}, r"\[ticks\]: align_ms must be >= 0"),
        # a quoted market the execution service does not watch
        (
            ('symbols = ["BTC/USDT"]', 'symbols = ["ETH/USDT"]'),
            {},
            r"\[quoting\] markets\[0\] \(binance:BTC/USDT, account main\): "
            r"missing from \[execution\] private\.symbols",
        ),
        # a quoted market on a venue the sink does not execute on
        (
            ('[execution.sink]\nvenue = "binance"', '[execution.sink]\nvenue = "okx"'),
            {},
            r"\[quoting\] markets\[0\] .*\[execution\] sink executes on okx",
        ),
        # a market priced by an index basket that does not exist
        (
            ('index_basket = "BTC"', 'index_basket = "BTX"'),
            {},
            r"index_basket 'BTX' is missing from \[index\] baskets",
        ),
    ],
)
def test_each_error_names_the_table_and_the_key(
    tmp_path: Path, edit: tuple[str, str] | None, env: dict[str, str], message: str
) -> None:
    text = SHARED
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        check_config(p, "ticks", env=env)
    assert str(p) in str(info.value) or "environment" in str(info.value)


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    p = write(tmp_path, "[ticks\nalign_ms = 1\n")
    with pytest.raises(ConfigError, match=f"cannot read configuration {p}"):
        check_config(p, "ticks", env={})


def test_dex_ingest_needs_a_file() -> None:
    with pytest.raises(ConfigError, match="dex_ingest service needs MAKERFLOW_CONFIG"):
        check_config(None, "dex_ingest", env={})
