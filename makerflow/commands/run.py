"""``makerflow run SERVICE``: a service under the Bytewax runner, with crash recovery.

makerflow run ticks              # = python -m bytewax.run makerflow.flows.ticks:flow -w 1
makerflow run ticks --workers 4  # one worker per partition: 4 processes, one cluster
makerflow run ticks --workers 4 --threads          # 4 worker threads of one process
makerflow run quoter --recovery /var/lib/makerflow/quoter          # survive kill -9
makerflow run risk --recovery DIR --snapshot-s 2 --backup-s 3600   # keep old snapshots 1 h
makerflow run ticks -w 1 -i 0 -a "host-a:2101;host-b:2101"         # process 0 of 2 hosts

Workers: ``--workers N`` is the cluster's worker count (what decides which partitions and keys
each worker gets, see makerflow.placement). With N > 1 each worker is a process of its own by
default: on CPython the workers of one process are threads under one interpreter lock, so a
second thread adds no CPU, a second process does. The N processes (``bytewax.run -w 1 -i k -a
ADDRESSES`` on free loopback ports) run under a supervisor that forwards SIGINT/SIGTERM to all;
if one exits non-zero or is killed it stops the others and exits with that status (128 +
signal for a signal). ``--threads`` keeps the N workers as threads of one process instead
(one core; less memory and no pickling between workers). A switch rather than a process
count: ``--workers`` stays the one number that decides where partitions and keys go, and
``--threads`` only how the workers are hosted, so switching never moves a key or needs a new
recovery store. ``-i/-a`` run one process of a cluster you start yourself (other hosts):
``-w`` is then this process's worker threads.

Recovery (Bytewax's): every ``--snapshot-s`` seconds of wall time an epoch ends and each
stateful step writes a snapshot of the keys it touched (books, windows, positions, order
state...) together with the input offsets into the SQLite partitions under ``--recovery``.
After a crash the service restarts from the last complete snapshot: it reads the topics again
from the offsets saved with it, so what it emitted since (at most one snapshot interval) is
emitted again, with the same content, and consumers must drop those repeats. The store is created on
first use (``python -m bytewax.recovery DIR N``, N = the worker count unless
``--recovery-partitions``); later runs resume from it. Delete the directory to start afresh
(the service then reads from ``MAKERFLOW_FROM``). The processes of ``--workers N`` share the
one store (Bytewax gives each partition to one worker); processes on several hosts (``-i/-a``)
need the same directory (a shared volume).

The configuration (``MAKERFLOW_CONFIG`` plus ``MAKERFLOW__<TABLE>__<KEY>`` overrides) is
checked before anything starts; an error exits with status 2. With one process the runner then
replaces this process (exec), so signals reach the service itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from makerflow.commands import cluster
from makerflow.flows.config_file import SERVICE_SECTIONS, check_config
from makerflow.schemas.config import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_S = 5.0
"""Seconds between snapshots: the most a restart re-reads and emits again."""
DEFAULT_BACKUP_S = 0.0
"""Seconds an old snapshot is kept after a newer one exists (0: only the latest); set it to
the interval at which the recovery directory is backed up off the machine."""


def service_module(name: str) -> str:
    """``all-in-one`` / ``all_in_one`` -> ``makerflow.flows.all_in_one``."""
    svc = name.replace("-", "_")
    if svc not in SERVICE_SECTIONS:
        raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICE_SECTIONS)}")
    return f"makerflow.flows.{svc}"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run a service under the Bytewax runner, with crash recovery (--recovery DIR)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "service",
        help=f"the service: {', '.join(s.replace('_', '-') for s in SERVICE_SECTIONS)}",
    )
    p.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        help="workers in all, one per input partition at most (default 1); each a process of"
        " its own unless --threads (with -i/-a: this process's worker threads)",
    )
    p.add_argument(
        "--threads",
        action="store_true",
        help="run the workers as threads of one process: they share one interpreter lock, so"
        " more threads add no CPU to Python steps (use it to save memory, or when most events"
        " cross between workers)",
    )
    p.add_argument("-i", "--process-id", type=int, help="this process's index (with -a)")
    p.add_argument("-a", "--addresses", help="every process's host:port, ';'-separated (with -i)")
    p.add_argument(
        "-r",
        "--recovery",
        type=Path,
        help="recovery directory: created and initialised on first use, resumed from after",
    )
    p.add_argument(
        "-s",
        "--snapshot-s",
        type=float,
        default=DEFAULT_SNAPSHOT_S,
        help=f"seconds between recovery snapshots (default {DEFAULT_SNAPSHOT_S:g}): the most"
        " a restart replays",
    )
    p.add_argument(
        "-b",
        "--backup-s",
        type=float,
        default=DEFAULT_BACKUP_S,
        help="seconds to keep superseded snapshots (default 0); set it to how often the"
        " recovery directory is backed up",
    )
    p.add_argument(
        "--recovery-partitions",
        type=int,
        help="SQLite partitions of a new recovery store (default: the worker count)",
    )
    p.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the commands instead of running them",
    )
    p.set_defaults(func=run)


def runner_command(
    module: str,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: str | None = None,
    recovery: Path | None = None,
    snapshot_s: float = DEFAULT_SNAPSHOT_S,
    backup_s: float = DEFAULT_BACKUP_S,
    python: str = sys.executable,
) -> list[str]:
    """The ``python -m bytewax.run`` command line of a service."""
    cmd = [python, "-m", "bytewax.run", f"{module}:flow", "-w", str(workers)]
    if process_id is not None:
        cmd += ["-i", str(process_id)]
    if addresses:
        cmd += ["-a", addresses]
    if recovery is not None:
        cmd += ["-r", str(recovery), "-s", f"{snapshot_s:g}", "-b", f"{backup_s:g}"]
    return cmd


def recovery_initialised(directory: Path) -> bool:
    return any(directory.glob("part-*.sqlite3"))


def init_recovery(directory: Path, partitions: int) -> bool:
    """Create the recovery store unless it exists; returns whether it was created."""
    if recovery_initialised(directory):
        return False
    from bytewax.recovery import init_db_dir  # what `python -m bytewax.recovery` runs

    directory.mkdir(parents=True, exist_ok=True)
    init_db_dir(directory, partitions)
    return True


def run(args: argparse.Namespace) -> int:
    try:
        module = service_module(args.service)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    problems = _check_args(args)
    if problems:
        print(problems, file=sys.stderr)
        return 2
    service = module.rsplit(".", 1)[1]
    try:
        check_config(os.environ.get("MAKERFLOW_CONFIG") or None, service)
    except ConfigError as exc:
        print(f"configuration error, {service} not started: {exc}", file=sys.stderr)
        return 2
    processes = 1 if args.threads or args.addresses or args.workers == 1 else args.workers
    if processes == 1:
        cmds = [_command(module, args, args.workers, args.process_id, args.addresses)]
        envs = [dict(os.environ)]
    else:
        addresses = cluster.local_addresses(processes)
        cmds = [_command(module, args, 1, i, addresses) for i in range(processes)]
        try:
            envs = [cluster.process_env(os.environ, i) for i in range(processes)]
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    if args.recovery is not None:
        parts = args.recovery_partitions or args.workers
        if args.print_only:
            if not recovery_initialised(args.recovery):
                print(shlex.join(["mkdir", "-p", str(args.recovery)]))
                print(shlex.join(_init_command(args.recovery, parts)))
        elif init_recovery(args.recovery, parts):
            logger.info("created recovery store %s (%d partitions)", args.recovery, parts)
        else:
            logger.info("resuming %s from recovery store %s", service, args.recovery)
    if args.print_only:
        for line in cluster.describe(cmds, envs):
            print(line)
        return 0
    sys.stdout.flush()  # before the processes share (or take over) the descriptors
    sys.stderr.flush()
    if processes > 1:
        logger.info("%s: %d processes of one worker, supervised", service, processes)
        return cluster.Supervisor(cmds, envs).run()
    cmd = cmds[0]
    logger.info("exec %s", shlex.join(cmd))
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    raise AssertionError("unreachable")  # pragma: no cover


def _command(
    module: str,
    args: argparse.Namespace,
    workers: int,
    process_id: int | None,
    addresses: str | None,
) -> list[str]:
    return runner_command(
        module,
        workers=workers,
        process_id=process_id,
        addresses=addresses,
        recovery=args.recovery,
        snapshot_s=args.snapshot_s,
        backup_s=args.backup_s,
    )


def _init_command(directory: Path, partitions: int) -> Sequence[str]:
    return [sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)]


def _check_args(args: argparse.Namespace) -> str | None:
    if args.workers < 1:
        return "--workers must be at least 1"
    if (args.process_id is None) != (args.addresses is None):
        return "-i/--process-id and -a/--addresses go together"
    if args.threads and args.addresses is not None:
        return "--threads is for one process; with -i/-a, -w is already this process's threads"
    if args.snapshot_s <= 0 or args.backup_s < 0:
        return "--snapshot-s must be > 0 and --backup-s >= 0"
    if args.recovery_partitions is not None and args.recovery_partitions < 1:
        return "--recovery-partitions must be at least 1"
    return None
