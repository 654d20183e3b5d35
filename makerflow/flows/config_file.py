"""The whole configuration file, checked before a service starts anything.

A service reads its own table, but one file (``MAKERFLOW_CONFIG``) configures them all, so a
service checks every table of it at start, with the environment's overrides
(``MAKERFLOW__<TABLE>__<KEY>``, see :mod:`makerflow.schemas.config`), and that the tables
agree on the markets: a market the quoter quotes that the execution service's private stream
does not watch would send orders whose fills never come back. Any problem is a
:class:`~makerflow.schemas.config.ConfigError` naming the file, the table and the key, raised
before a topic is read, a port opened or an order sent (``makerflow config check`` runs the
same checks by hand).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from makerflow.schemas.config import (
    SECTIONS,
    Config,
    ConfigError,
    convert_section,
    env_overrides,
    is_shared_file,
    read_toml,
    resolved_table,
    with_registry_overrides,
)
from makerflow.schemas.markets import registry_of

# Where each table's model lives (imported when needed: the flows import this module).
SECTION_TYPES: dict[str, tuple[str, str]] = {
    "ticks": ("makerflow.operators.ticks", "TicksConfig"),
    "index": ("makerflow.operators.index_config", "IndexConfig"),
    "quoting": ("makerflow.operators.quoting_config", "QuotingConfig"),
    "risk": ("makerflow.operators.risk_limits", "RiskConfig"),
    "execution": ("makerflow.flows.execution", "ExecutionConfig"),
    "reconcile": ("makerflow.flows.reconcile", "ReconFlowConfig"),
    "dex_ingest": ("makerflow.sources.web3_config", "Web3SourceConfig"),
    "all_in_one": ("makerflow.flows.all_in_one", "PipelineConfig"),
}
assert set(SECTION_TYPES) == set(SECTIONS)

SERVICE_SECTIONS: dict[str, str] = {
    "ticks": "ticks",
    "index": "index",
    "dex_ingest": "dex_ingest",
    "risk": "risk",
    "quoter": "quoting",
    "execution": "execution",
    "reconcile": "reconcile",
    "all_in_one": "all_in_one",
}
"""The table each service (``makerflow.flows.<service>``) reads."""

NEEDS_FILE = {"dex_ingest"}


def section_type(section: str) -> type[Config]:
    module, name = SECTION_TYPES[section]
    t: type[Config] = getattr(importlib.import_module(module), name)
    return t


def check_config(
    path: str | Path | None,
    service: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Config]:
    """Every table of the file (for a file without tables: ``service``'s), overrides
    applied, validated and checked against each other; returns them by table."""
    e = os.environ if env is None else env
    own = SERVICE_SECTIONS.get(service) if service else None
    if service is not None and own is None:
        raise ConfigError(f"unknown service {service!r}; one of {', '.join(SERVICE_SECTIONS)}")
    if path is None:
        if service in NEEDS_FILE:
            raise ConfigError(
                f"the {service} service needs MAKERFLOW_CONFIG naming a TOML file (its"
                f" [{own}] table: the node's rpc_url, the pools and feeds to read);"
                " `makerflow chain --config-out FILE` writes one"
            )
        data: dict[str, Any] = {}
        where = "environment"
    else:
        data = with_registry_overrides(read_toml(path), e)
        where = str(path)
    shared = is_shared_file(data) or not data
    if shared:
        sections = [s for s in SECTIONS if s in data or env_overrides(s, e) or s == own]
    elif own is not None:
        sections = [own]
    else:
        raise ConfigError(
            f"{where} has no service tables ({', '.join(f'[{s}]' for s in SECTIONS)});"
            " name the service it is for"
        )
    configs: dict[str, Config] = {}
    for section in sections:
        if section in NEEDS_FILE and section != own and section not in data:
            continue  # only overrides for a service that is not this one and has no table
        overrides = env_overrides(section, e)
        table = resolved_table(data, section, where, overrides)
        configs[section] = convert_section(table, section, section_type(section), where, overrides)
    if shared:
        check_markets(configs, where, present=set(data))
        check_registry(data, configs, where)
    return configs


def check_registry(data: Mapping[str, Any], configs: Mapping[str, Any], where: str) -> None:
    """The registry's baskets are baskets of the index service (when it has a table)."""
    registry = registry_of(data, where)
    if registry is None or "index" not in data:
        return
    baskets = {b.name for b in configs["index"].baskets} if "index" in configs else set()
    for i, m in enumerate(registry.markets):
        if m.index_basket and m.index_basket not in baskets:
            raise ConfigError(
                f"{where}: [[markets]] markets[{i}] ({m.key}): index_basket"
                f" {m.index_basket!r} is missing from [index] baskets"
                f" ({', '.join(sorted(baskets))})"
            )


def check_markets(configs: Mapping[str, Any], where: str, present: set[str]) -> None:
    """The tables agree on the markets: every quoted market is executed and watched by the
    execution service, and every ``index_basket`` names a basket of the index service."""
    quoting, execution = configs.get("quoting"), configs.get("execution")
    index: Any = configs.get("index") or section_type("index")()
    baskets = {b.name for b in index.baskets}
    if quoting is not None and "quoting" in present:
        for i, m in enumerate(quoting.markets):
            label = f"[quoting] markets[{i}] ({m.venue}:{m.symbol}, account {m.account})"
            if m.index_basket and m.index_basket not in baskets:
                raise ConfigError(
                    f"{where}: {label}: index_basket {m.index_basket!r} is missing from"
                    f" [index] baskets ({', '.join(sorted(baskets))})"
                )
            if execution is None or "execution" not in present:
                continue
            sink = execution.sink
            if (m.venue, m.account) != (sink.venue, sink.account):
                raise ConfigError(
                    f"{where}: {label}: [execution] sink executes on {sink.venue}, account"
                    f" {sink.account}: the market is missing from the execution service"
                )
            priv = execution.private
            if execution.private_stream and (
                (m.venue, m.account) != (priv.venue, priv.account) or m.symbol not in priv.symbols
            ):
                raise ConfigError(
                    f"{where}: {label}: missing from [execution] private.symbols"
                    f" {list(priv.symbols)} ({priv.venue}, account {priv.account}): its"
                    " order updates and fills would never come back"
                )
    risk = configs.get("risk")
    if risk is not None and "risk" in present:
        for i, rm in enumerate(risk.markets):
            if rm.index_basket and rm.index_basket not in baskets:
                raise ConfigError(
                    f"{where}: [risk] markets[{i}] ({rm.venue}:{rm.symbol}): index_basket"
                    f" {rm.index_basket!r} is missing from [index] baskets"
                    f" ({', '.join(sorted(baskets))})"
                )


def service_of_module(module: str) -> str | None:
    """``makerflow.flows.quoter`` -> ``quoter`` (None for a module that is no service)."""
    prefix = "makerflow.flows."
    name = module[len(prefix) :] if module.startswith(prefix) else ""
    return name if name in SERVICE_SECTIONS else None
