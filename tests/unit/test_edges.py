"""Edges never import each other: sources and sinks share the venue layer
(:mod:`makerflow.venue`) instead. Found on main: ``sources/private_stream.py`` imported
``sinks/exchange.py`` for the client, the credentials and the order translation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import makerflow

ROOT = Path(makerflow.__file__).resolve().parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("edge", "other"), [("sources", "sinks"), ("sinks", "sources")])
def test_an_edge_never_imports_the_other(edge: str, other: str) -> None:
    offenders = {
        p.name: sorted(m for m in imported(p) if m.startswith(f"makerflow.{other}"))
        for p in sorted((ROOT / edge).glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_private_stream_and_the_sink_share_the_venue_layer() -> None:
    for p in (ROOT / "sources" / "private_stream.py", ROOT / "sinks" / "exchange_executor.py"):
        assert "makerflow.venue" in imported(p), p
