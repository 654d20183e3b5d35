"""API credentials: read from files or the environment, never from config, never logged."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class CredentialSpec(Protocol):
    """Where a config says the credentials are (the sink's and the private stream's configs
    both have these fields)."""

    @property
    def api_key_env(self) -> str: ...
    @property
    def secret_env(self) -> str: ...
    @property
    def api_key_file(self) -> str | None: ...
    @property
    def secret_file(self) -> str | None: ...


@dataclass(frozen=True)
class Credentials:
    """An API key pair; its ``repr`` (and so every log line) masks both."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        shown = self.api_key[:4] + "…" if len(self.api_key) > 8 else "…"
        return f"Credentials(api_key={shown!r}, secret='***')"

    __str__ = __repr__

    @classmethod
    def load(cls, spec: CredentialSpec, env: Mapping[str, str] | None = None) -> Credentials:
        """From the files ``spec`` names (a file wins), else its environment variables."""
        e = os.environ if env is None else env

        def read(file: str | None, var: str) -> str:
            if file:
                return Path(file).read_text().strip()
            value = e.get(var, "")
            if not value:
                raise ValueError(
                    f"no exchange credential: set the environment variable {var} "
                    "or name a secret file in the exchange config"
                )
            return value

        return cls(
            read(spec.api_key_file, spec.api_key_env), read(spec.secret_file, spec.secret_env)
        )
