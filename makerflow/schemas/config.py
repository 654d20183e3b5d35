"""Base for configuration models: frozen msgspec Structs that refuse unknown fields, so a
typo in a config file is an error at start-up rather than a silently ignored setting.

One TOML file configures every service, one table each (:data:`SECTIONS`); a file for a
single service may leave its table header out. Environment variables override single keys:
``MAKERFLOW__<TABLE>__<KEY>[__<KEY>...]=<TOML value>`` (``MAKERFLOW__TICKS__ALIGN_MS=50``,
``MAKERFLOW__QUOTING__DEFAULTS__GAMMA=0.01``, ``MAKERFLOW__QUOTING__MARKETS__0__ACCOUNT='"b"'``;
a value that is not TOML is taken as a string). Every error is a :class:`ConfigError` whose
message names the file, the table and the key.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every configuration model."""


C = TypeVar("C", bound=Config)

SECTIONS = (
    "ticks",
    "index",
    "quoting",
    "risk",
    "execution",
    "reconcile",
    "dex_ingest",
    "all_in_one",
)
"""The tables of a shared configuration file, one per service."""

ENV_PREFIX = "MAKERFLOW__"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and what to change."""


def load_config(path: str | Path, config_type: type[C]) -> C:
    """Load a TOML or JSON file into ``config_type``, with a message naming the bad field."""
    p = Path(path)
    data = p.read_bytes()
    try:
        if p.suffix == ".json":
            return msgspec.json.decode(data, type=config_type)
        return msgspec.convert(tomllib.loads(data.decode()), type=config_type)
    except (msgspec.ValidationError, msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid configuration in {p}: {exc}") from None


class KafkaConfig(Config, frozen=True, kw_only=True):
    brokers: tuple[str, ...] = ("127.0.0.1:9092",)
    group_id: str = "makerflow"


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read configuration {p}: {exc}") from None


def is_shared_file(data: Mapping[str, Any]) -> bool:
    """Whether a file is split into service tables (else it is one service's, headerless)."""
    return any(k in SECTIONS and isinstance(v, dict) for k, v in data.items())


def section_table(data: Mapping[str, Any], section: str, where: str) -> dict[str, Any]:
    """The ``[section]`` table of a file's data; an unknown table of a shared file is an
    error (a typo there would otherwise leave a service on its defaults)."""
    if not is_shared_file(data):
        return dict(data)
    for key in data:
        if key not in SECTIONS and key != "markets":  # the market registry's array
            hint = _did_you_mean(key, SECTIONS)
            raise ConfigError(
                f"{where}: unknown table [{key}]{hint}; the tables are {', '.join(SECTIONS)}"
            )
    table = data.get(section, {})
    return dict(table)


def env_overrides(section: str, env: Mapping[str, str]) -> dict[tuple[str, ...], tuple[Any, str]]:
    """The overrides of ``section`` in ``env``: key path -> (value, variable name)."""
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    out: dict[tuple[str, ...], tuple[Any, str]] = {}
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        keys = tuple(k.lower() for k in name[len(prefix) :].split("__"))
        if not all(keys):
            raise ConfigError(f"{name}: empty key in the variable name")
        out[keys] = (_parse_value(raw), name)
    return out


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(
    table: dict[str, Any], overrides: Mapping[tuple[str, ...], tuple[Any, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = _deep_copy(table)
    for keys, (value, name) in overrides.items():
        node: Any = out
        for i, k in enumerate(keys[:-1]):
            nxt = keys[i + 1]
            if isinstance(node, list):
                node = _list_item(node, k, name)
                continue
            if k not in node:
                node[k] = [] if nxt.isdigit() else {}
            node = node[k]
        last = keys[-1]
        if isinstance(node, list):
            idx = _index(last, name)
            if idx >= len(node):
                raise ConfigError(f"{name}: there is no item {idx} to set")
            node[idx] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{name}: {'.'.join(keys[:-1])} is not a table")
    return out


def _list_item(node: list[Any], k: str, name: str) -> Any:
    idx = _index(k, name)
    if idx >= len(node):
        raise ConfigError(f"{name}: there is no item {idx} in the configuration to change")
    return node[idx]


def _index(k: str, name: str) -> int:
    if not k.isdigit():
        raise ConfigError(f"{name}: {k!r} indexes a list, so it must be a number")
    return int(k)


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


def convert_section(
    table: Mapping[str, Any],
    section: str,
    config_type: type[C],
    where: str,
    overrides: Mapping[tuple[str, ...], tuple[Any, str]] | None = None,
) -> C:
    """``table`` as ``config_type``, or a :class:`ConfigError` naming table and key."""
    try:
        return msgspec.convert(table, type=config_type)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise ConfigError(
            describe_error(str(exc), section, config_type, where, overrides)
        ) from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def describe_error(
    text: str,
    section: str,
    config_type: type[Config],
    where: str,
    overrides: Mapping[tuple[str, ...], tuple[Any, str]] | None = None,
) -> str:
    """msgspec's message in the file's terms: ``FILE: [table] key: what is wrong``."""
    m = _AT.match(text)
    msg, path = (m["msg"], m["path"] or "") if m else (text, "")
    key = path.lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if unknown:
        key = f"{key}.{unknown[1]}" if key else unknown[1]
        known = _fields_at(config_type, path)
        msg = "unknown key" + _did_you_mean(unknown[1], known)
        if known:
            msg += f" (known keys: {', '.join(sorted(known))})"
    elif missing:
        key = f"{key}.{missing[1]}" if key else missing[1]
        msg = "missing (this key has no default)"
    else:
        msg = msg[0].lower() + msg[1:] if msg[:1].isupper() and msg[:2] != "A-" else msg
    by_env = ""
    plain = re.sub(r"\[(\d+)\]", r".\1", key)  # markets[0].lot_size -> markets.0.lot_size
    for keys, (_, name) in (overrides or {}).items():
        dotted = ".".join(keys)
        if plain and (
            plain == dotted
            or plain.startswith(dotted + ".")
            or (not unknown and dotted.startswith(plain + "."))
        ):
            by_env = f" (set by {name})"
    label = f"[{section}] {key}" if key else f"[{section}]"
    return f"{where}: {label}: {msg}{by_env}"


def _fields_at(config_type: type[Config], path: str) -> list[str]:
    # The fields of the struct at msgspec's path, for the list of known keys.
    t: Any = config_type
    for part in re.findall(r"\.(\w+)|\[\d+\]", path):
        if not part:  # a list index: the item type
            args = getattr(t, "__args__", ())
            t = args[0] if args else None
        else:
            fields = {f.name: f.type for f in msgspec.structs.fields(t)} if _is_struct(t) else {}
            t = fields.get(part)
        t = _struct_in(t)
        if t is None:
            return []
    return [f.name for f in msgspec.structs.fields(t)] if _is_struct(t) else []


def _struct_in(t: Any) -> Any:
    if _is_struct(t):
        return t
    for a in getattr(t, "__args__", ()) or ():
        s = _struct_in(a)
        if s is not None:
            return s
    return None


def _is_struct(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, msgspec.Struct)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def load_section(
    path: str | Path | None,
    section: str,
    config_type: type[C],
    env: Mapping[str, str] | None = None,
) -> C:
    """The ``[section]`` table of a TOML file (or, in a file without service tables, the
    whole file) as ``config_type``, with the ``MAKERFLOW__<SECTION>__...`` overrides of
    ``env`` (the process environment by default); the defaults when there is neither.

    One file can so configure every service (:data:`SECTIONS`), and a file for one service
    can leave the table header out. Raises :class:`ConfigError` naming table and key.
    """
    e = os.environ if env is None else env
    overrides = env_overrides(section, e)
    if path is None:
        if not overrides:
            return config_type()
        where, data = "environment", {}
    else:
        where, data = str(path), with_registry_overrides(read_toml(path), e)
    return convert_section(
        resolved_table(data, section, where, overrides), section, config_type, where, overrides
    )


def with_registry_overrides(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with the ``MAKERFLOW__MARKETS__<N>__<KEY>`` overrides of the market registry
    (the top-level ``[[markets]]`` of a file with service tables) applied."""
    out = dict(data)
    overrides = env_overrides("markets", env)
    if not overrides or not is_shared_file(data):
        return out
    prefixed = {("markets", *keys): v for keys, v in overrides.items()}
    out.update(apply_overrides({"markets": list(data.get("markets") or [])}, prefixed))
    return out


def resolved_table(
    data: Mapping[str, Any],
    section: str,
    where: str,
    overrides: Mapping[tuple[str, ...], tuple[Any, str]],
) -> dict[str, Any]:
    """``section``'s table of ``data`` with the market registry's facts and ``overrides``
    applied (:mod:`makerflow.schemas.markets`); resolved again after the overrides, so an
    override that contradicts the registry is an error too."""
    from makerflow.schemas.markets import registry_of, resolve_section

    table = section_table(data, section, where)
    registry = registry_of(data, where) if is_shared_file(data) else None
    table = resolve_section(section, table, registry, where)
    return resolve_section(section, apply_overrides(table, overrides), registry, where)
