"""A backtest's settings: the TOML tables the services read, plus ``section.key=value``
overrides, and the grid of a sweep.

``[ticks]``, ``[index]``, ``[quoting]``, ``[risk]`` and ``[recon]`` are the services' own tables
(the same file can configure a live deployment); ``[venue]`` is the simulated venue
(:class:`~makerflow.backtest.venue.VenueConfig`). Of ``[execution]`` the backtest reads the
checks live execution applies before the venue: ``[execution.gate]`` (the risk gate) and
``[execution.sink]`` (its ``guards``, the fat-finger limits); the rest of that table
(``private``, ``flatten``, ...) is about the real exchange and is left alone, as are other
tables of the file (``[exchange]``, ``[dex_ingest]``, ...).

An override names a field by its path: ``quoting.defaults.gamma=0.05``, ``venue.seed=3``,
``risk.window_ms=30000``. A quoting parameter may leave out ``defaults``
(``quoting.gamma=0.05``), as the control topic's ``set_params`` does. Values are TOML values
(``true``, ``0.5``, ``"text"``, ``[1, 2]``); a bare word that is not one is a string. A value
with commas outside brackets is a sweep: ``quoting.gamma=0.01,0.05,0.1`` gives three runs, and
several such overrides give their product.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from makerflow.backtest.venue import VenueConfig
from makerflow.operators.guards import GuardLimits
from makerflow.operators.index import IndexConfig
from makerflow.operators.quoting_config import QuotingConfig, QuotingParams
from makerflow.operators.recon_logic import ReconConfig
from makerflow.operators.risk_gate import GateConfig
from makerflow.operators.risk_limits import RiskConfig
from makerflow.operators.ticks import TicksConfig
from makerflow.schemas.config import Config
from makerflow.schemas.markets import MarketRegistry, registry_of, resolve_section
from makerflow.sinks.exchange_config import ExchangeSinkConfig

SECTIONS = ("ticks", "index", "quoting", "risk", "recon", "venue", "execution")
_EXECUTION_TABLES = ("gate", "sink")
"""The parts of ``[execution]`` a backtest applies (the checks in front of the venue)."""


class ExecutionChecks(Config, frozen=True, kw_only=True):
    """What live execution checks before an intent reaches the exchange, from the same
    ``[execution]`` tables: the risk gate, then the sink's fat-finger guards."""

    gate: GateConfig = GateConfig()
    sink: ExchangeSinkConfig = ExchangeSinkConfig()

    @property
    def guards(self) -> GuardLimits:
        return self.sink.guards


class BacktestConfig(Config, frozen=True, kw_only=True):
    """Every table a backtest reads."""

    ticks: TicksConfig = TicksConfig()
    index: IndexConfig = IndexConfig()
    quoting: QuotingConfig = QuotingConfig()
    risk: RiskConfig = RiskConfig()
    recon: ReconConfig = ReconConfig()
    venue: VenueConfig = VenueConfig()
    execution: ExecutionChecks = ExecutionChecks()


Override = tuple[str, Any]
"""``("quoting.defaults.gamma", 0.05)``."""


def parse_value(text: str) -> Any:
    """A TOML value, or the text itself when it is not one (a bare word)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _split_top(text: str) -> list[str]:
    """``text`` split at commas outside brackets and quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``section.key=v1,v2`` -> ``("section.key", [v1, v2])``."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path or "." not in path:
        raise ValueError(f"--param {text!r}: expected section.key=value (quoting.gamma=0.05)")
    section = path.split(".", 1)[0]
    if section not in SECTIONS:
        raise ValueError(f"--param {text!r}: unknown section {section!r}; one of {SECTIONS}")
    return _canonical(path), [parse_value(v) for v in _split_top(values)]


def _canonical(path: str) -> str:
    section, _, rest = path.partition(".")
    if section == "quoting" and rest.split(".", 1)[0] in QuotingParams.__struct_fields__:
        return f"quoting.defaults.{rest}"
    return path


def grid(params: Sequence[str]) -> list[tuple[Override, ...]]:
    """Every combination of the ``--param`` values (one run without sweeps)."""
    parsed = [parse_param(p) for p in params]
    axes = [[(path, v) for v in values] for path, values in parsed]
    return [tuple(combo) for combo in itertools.product(*axes)]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = node[k] = {}
        node = child
    node[keys[-1]] = value


def _asdict(value: Any) -> Any:
    return msgspec.to_builtins(value)


def load_backtest_config(
    path: str | Path | None,
    overrides: Sequence[Override] = (),
    base: BacktestConfig | None = None,
) -> BacktestConfig:
    """The backtest tables of the TOML file ``path`` (defaults without one, or ``base``),
    with ``overrides`` applied; a ValueError names what is wrong."""
    data: dict[str, Any] = {}
    registry: MarketRegistry | None = None
    if base is not None:
        data = _asdict(base)
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read configuration {p}: {exc}") from None
        registry = registry_of(raw, str(p))
        for section in SECTIONS:
            if section not in raw:
                continue
            table = raw[section]
            if section == "execution" and isinstance(table, dict):
                table = {k: v for k, v in table.items() if k in _EXECUTION_TABLES}
            data[section] = table
    for key, value in overrides:
        _set(data, key, value)
    if path is not None and registry is not None:
        for section in ("quoting", "risk"):
            # The market rules (tick, lot, minimums, fees, basket) come from the file's
            # [[markets]] registry, as in a live deployment; an override that contradicts
            # it is an error.
            data[section] = resolve_section(section, data.get(section, {}), registry, str(path))
    try:
        return msgspec.convert(data, type=BacktestConfig)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"invalid backtest configuration: {exc}") from None


def label(combo: Sequence[Override], params: Sequence[str] = ()) -> str:
    """A short name of one run of a sweep (``gamma=0.05,seed=3``) from the settings that
    vary across the sweep's ``params``, for tables and directories."""
    varying = {path for path, values in map(parse_param, params) if len(values) > 1}
    shown = [(k, v) for k, v in combo if not varying or k in varying]
    if not shown:
        return "run"
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in shown)
