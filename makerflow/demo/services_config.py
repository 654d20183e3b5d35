"""The services' configuration file of ``makerflow demo --services``: the one-process demo's
settings split into one TOML table per service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from makerflow.demo.runner import demo_config


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return msgspec.json.encode(v).decode()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else msgspec.json.encode(k).decode()


def _drop_none(v: Any) -> Any:
    """TOML has no null: a field left out takes its default (every None here is one)."""
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_drop_none(x) for x in v]
    return v


def to_toml(sections: Mapping[str, Any]) -> str:
    """``{section: config}`` as a TOML document, one table per section (a pure function;
    nested values as inline tables)."""
    lines: list[str] = []
    for name, config in sections.items():
        table = _drop_none(msgspec.to_builtins(config))
        lines.append(f"[{name}]")
        lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)


def services_config(exchange_url: str, rpc_config: Any) -> dict[str, Any]:
    """Every service's table: the one-process demo's settings, split by service."""
    from makerflow.flows.execution import ExecutionConfig
    from makerflow.flows.reconcile import ReconFlowConfig
    from makerflow.sources.private_stream import PrivateStreamConfig

    cfg = demo_config(exchange_url)
    private = PrivateStreamConfig(url=exchange_url, symbols=("BTC/USDT",), poll_interval_s=0.5)
    return {
        "ticks": cfg.ticks,
        "index": cfg.index,
        "dex_ingest": rpc_config,
        "risk": cfg.risk,
        "quoting": cfg.quoting,
        "execution": ExecutionConfig(
            sink=cfg.exchange, private=private, gate=cfg.gate, flatten=cfg.flatten
        ),
        "reconcile": ReconFlowConfig(recon=cfg.recon),
    }
