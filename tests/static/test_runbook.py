"""Every ``makerflow`` command in the runbook and the README parses with the real CLI
(options, choices, required arguments), and every environment variable set in front of one
is a setting makerflow reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from makerflow.cli import build_parser
from makerflow.schemas.config import ENV_PREFIX, SECTIONS
from tests.conftest import REPO

DOCS = [REPO / "docs" / "runbook.md", REPO / "README.md"]
KNOWN_ENV = {
    "MAKERFLOW_BROKERS",
    "MAKERFLOW_CONFIG",
    "MAKERFLOW_TAIL",
    "MAKERFLOW_FROM",
    "MAKERFLOW_METRICS_PORT",
    "MAKERFLOW_WALL_CLOCK",
    "MAKERFLOW_LOG_LEVEL",
    "MAKERFLOW_EXCHANGE_URL",
    "MAKERFLOW_EXCHANGE_API_KEY",
    "MAKERFLOW_EXCHANGE_SECRET",
}


def commands(path: Path) -> list[str]:
    """``makerflow ...`` lines of fenced code blocks and inline code spans."""
    text = path.read_text()
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        # A shell line continued with a backslash is one command.
        block = re.sub(r"\\[ \t]*(#[^\n]*)?\n", " ", block)
        found += [line.strip() for line in block.splitlines() if "makerflow " in line]
    # Inline: invocations only, not a bare command name or a usage synopsis ([opt], a|b, <x>).
    for span in re.findall(r"`([^`\n]*\bmakerflow [^`\n]*)`", text):
        if not re.search(r"[\[\]|<>]|\.\.\.", span) and len(span.split()) > 2:
            found.append(span)
    # A shell prompt's "$ " is not part of the command; a line that does not start with
    # makerflow (after VAR=value settings) is output pasted beside it, not a command.
    found = [c.removeprefix("$ ") for c in found]
    return [
        c for c in found if re.match(r"([A-Z_][A-Z0-9_]*=\S*\s+)*makerflow [a-z][a-z-]*(\s|$)", c)
    ]


def split(command: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(command.split(" #", 1)[0])
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        k, _, v = words.pop(0).partition("=")
        env[k] = v
    assert words and words[0] == "makerflow", command
    return env, words[1:]


CASES = [(p.name, c) for p in DOCS for c in commands(p)]


def test_the_runbook_has_the_commands_it_promises():
    runbook = [c for name, c in CASES if name == "runbook.md"]
    verbs = {tuple(split(c)[1][:2]) for c in runbook}
    for wanted in [
        ("control", "halt"),
        ("control", "resume"),
        ("config", "check"),
        ("topics", "create"),
        ("replay", "--input"),
        ("deadletters", "list"),
        ("deadletters", "replay"),
        ("quoting-markets", "ETH/USDT"),
    ]:
        assert wanted in verbs, wanted
    assert any(split(c)[1][0] == "run" for c in runbook)


@pytest.mark.parametrize(("doc", "command"), CASES)
def test_a_documented_command_parses(doc: str, command: str) -> None:
    env, argv = split(command)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
    assert callable(getattr(args, "func", None)), command
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name[len(ENV_PREFIX) :].split("__")[0].lower() in SECTIONS, name
        else:
            assert name in KNOWN_ENV, f"{doc}: {name} is not a makerflow setting"
