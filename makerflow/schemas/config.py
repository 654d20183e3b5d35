"""Base for configuration models: frozen msgspec Structs that refuse unknown fields, so a
typo in a config file is an error at start-up rather than a silently ignored setting."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

import msgspec


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every configuration model."""


C = TypeVar("C", bound=Config)


def load_config(path: str | Path, config_type: type[C]) -> C:
    """Load a TOML or JSON file into ``config_type``, with a message naming the bad field."""
    p = Path(path)
    data = p.read_bytes()
    try:
        if p.suffix == ".json":
            return msgspec.json.decode(data, type=config_type)
        return msgspec.convert(tomllib.loads(data.decode()), type=config_type)
    except (msgspec.ValidationError, msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"invalid configuration in {p}: {exc}") from None


class KafkaConfig(Config, frozen=True, kw_only=True):
    brokers: tuple[str, ...] = ("127.0.0.1:9092",)
    group_id: str = "makerflow"


def load_section(path: str | Path | None, section: str, config_type: type[C]) -> C:
    """The ``[section]`` table of a TOML file (or, without one, the whole file) as
    ``config_type``; the defaults when ``path`` is None.

    One file can so configure every service (``[ticks]``, ``[index]``, ``[quoting]``,
    ``[risk]``, ``[execution]``, ``[reconcile]``, ``[dex_ingest]``), and a file for one service
    can leave the table header out.
    """
    if path is None:
        return config_type()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read configuration {p}: {exc}") from None
    table = data.get(section, data)
    try:
        return msgspec.convert(table, type=config_type)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"invalid [{section}] configuration in {p}: {exc}") from None
