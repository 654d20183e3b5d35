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
