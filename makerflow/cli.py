"""The ``makerflow`` command.

Each subcommand lives in its own module under ``makerflow.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (taking the parsed args and
returning an exit code). Modules are discovered, so adding a capability adds a file, not an
edit here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import makerflow.commands


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or only that of the command module ``only``."""
    parser = argparse.ArgumentParser(
        prog="makerflow", description="makerflow: market making on Bytewax dataflows"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(makerflow.commands.__path__), key=lambda m: m.name):
        if only is not None and info.name != only:
            continue
        module = importlib.import_module(f"makerflow.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Only the named command's module when ``argv`` starts with a command that its module of
    the same name registers: importing every command costs seconds of CPU (the backtest
    engine, the in-process EVM), which ``makerflow run`` would pay before starting a service.
    Anything else (``--help``, other names) gets every command."""
    i = 0
    while i < len(argv) and argv[i].startswith("--log-level"):  # the one top-level option
        i += 1 if "=" in argv[i] else 2
    command = argv[i] if i < len(argv) else ""
    names = {m.name for m in pkgutil.iter_modules(makerflow.commands.__path__)}
    if command.replace("-", "_") in names:
        parser = build_parser(only=command.replace("-", "_"))
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if command in sub.choices:
            return parser
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_for(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
