"""``makerflow config check``: validate the configuration file and the environment's
overrides as every service does at start (tables, keys, types, markets).

makerflow config check                          # $MAKERFLOW_CONFIG and MAKERFLOW__* overrides
makerflow config check --config prod.toml
makerflow config check --config quoter.toml --service quoter   # a file for one service
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from makerflow.flows.config_file import SERVICE_SECTIONS, check_config
from makerflow.schemas.config import ConfigError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "config", help="check the configuration file as the services do at start"
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ck = verbs.add_parser(
        "check",
        help="validate every table of the file (and MAKERFLOW__<TABLE>__<KEY> overrides)",
    )
    ck.add_argument(
        "--config",
        default=os.environ.get("MAKERFLOW_CONFIG"),
        help="the TOML file (default: $MAKERFLOW_CONFIG)",
    )
    ck.add_argument(
        "--service",
        choices=sorted(SERVICE_SECTIONS),
        help="the service a file without [tables] is for",
    )
    ck.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        configs = check_config(args.config, args.service)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    where = args.config or "defaults and environment"
    print(f"{where}: valid ({', '.join(configs) or 'no tables: every service on defaults'})")
    return 0
