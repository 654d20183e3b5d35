"""N Bytewax processes of one worker each, as one cluster on loopback, under one supervisor.

Why processes: on CPython 3.11 the workers of one process are threads under one interpreter
lock, so ``python -m bytewax.run -w 2`` gets no more CPU than ``-w 1`` (Bytewax 0.21's
performance guide, *Workers, processes and GIL contention*, advises ``-i/-a`` processes over
``-w``). ``makerflow run SERVICE --workers N`` therefore starts N
``python -m bytewax.run ... -w 1 -i k -a ADDRESSES`` processes, ``k`` = 0..N-1, where
``ADDRESSES`` is every process's ``127.0.0.1:port`` joined by ``;`` (Bytewax 0.21.1's ``-a``
takes the list itself; a file of one address a line is read only through
``BYTEWAX_HOSTFILE_PATH``). The cluster's N workers are indexed as N threads of one process
would be, so partitions and keys land where :mod:`makerflow.placement` says either way.

The supervisor (:class:`Supervisor`) forwards SIGINT/SIGTERM to every process; when one exits
non-zero or is killed, it stops the others (SIGTERM, then SIGKILL after a grace period) and
exits with that process's status, ``128 + signal`` for a signal (the shell's convention, and
what the execution service's own SIGINT/SIGTERM handler exits with). Which process failed
first is not always visible: a Bytewax worker whose peer is killed panics and exits 1 within
milliseconds, often inside the same poll. So a failure is decided :data:`SETTLE_S` after the
first one is seen, and a process killed by a signal in that time is taken as the cause over
peers that exited with an error (:func:`root_cause`). After a signal it
received itself it exits ``128 + that signal``. The processes run in process groups of their
own (a terminal's Ctrl-C reaches them once, through the supervisor) and are sent SIGTERM by
the kernel if the supervisor itself dies (``PR_SET_PDEATHSIG``), so none outlives it.

Each process serves its own ``/metrics``: process ``k`` on ``MAKERFLOW_METRICS_PORT + k``
(9464, 9465, ... by default; ``0`` stays ``0``, a free port each).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

from makerflow.broker import free_port
from makerflow.sinks.metrics import ENV_PORT, metrics_port_from_env

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
"""Seconds a process has to exit after SIGTERM before it is killed (the execution service
closes its venue clients in at most 2 s)."""
SETTLE_S = 0.5
"""Seconds between the first failure seen and the decision of which process caused it."""
_PR_SET_PDEATHSIG = 1


def local_addresses(n: int, port: Callable[[], int] = free_port) -> str:
    """``127.0.0.1:p0;127.0.0.1:p1;...``: ``n`` distinct ports free right now."""
    ports: list[int] = []
    while len(ports) < n:
        p = port()
        if p not in ports:
            ports.append(p)
    return ";".join(f"127.0.0.1:{p}" for p in ports)


def process_env(env: Mapping[str, str], index: int) -> dict[str, str]:
    """Process ``index``'s environment: its own metrics port (base + index; 0 stays 0)."""
    base = metrics_port_from_env(dict(env))
    port = base + index if base else 0
    if port > 65535:
        raise ValueError(f"{ENV_PORT}={base} + process {index} is past 65535")
    return {**env, ENV_PORT: str(port)}


def exit_status(returncode: int) -> int:
    """A child's ``Popen.returncode`` as a shell status: ``-N`` (killed by signal N) is
    ``128 + N``."""
    return 128 - returncode if returncode < 0 else returncode


def root_cause(failures: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The ``(index, returncode)`` taken as the cause among failures seen together: the first
    killed by a signal (its peers' errors are most likely their lost connection to it), else the
    first seen."""
    if not failures:
        raise ValueError("no failure to choose from")
    return next((f for f in failures if f[1] < 0), failures[0])


def shell_line(cmd: Sequence[str], env: Mapping[str, str], base: Mapping[str, str]) -> str:
    """The command as a shell line, prefixed with the variables that differ from ``base``."""
    diff = [f"{k}={shlex.quote(v)}" for k, v in env.items() if base.get(k) != v]
    return " ".join([*diff, shlex.join(cmd)])


def _die_with_parent() -> None:  # pragma: no cover (runs in the child, between fork and exec)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    """Starts the processes, forwards signals, stops all when one fails; :meth:`run` returns
    the exit status (see the module docstring)."""

    def __init__(
        self,
        cmds: Sequence[Sequence[str]],
        envs: Sequence[Mapping[str, str]],
        grace_s: float = STOP_GRACE_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        if len(cmds) != len(envs) or not cmds:
            raise ValueError("one environment per command, and at least one command")
        self.cmds = [list(c) for c in cmds]
        self.envs = [dict(e) for e in envs]
        self.grace_s = grace_s
        self.settle_s = settle_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.status: int | None = None
        """The exit status once decided: the first failure's, or 128 + a received signal."""
        self._kill_at: float | None = None
        self._pending: list[int] = []
        """Signals received and not yet passed on (the handler only records them: the loop,
        which also reaps, sends them, so a signal never goes to a process already reaped)."""

    def run(self, poll_s: float = 0.05) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for i, (cmd, env) in enumerate(zip(self.cmds, self.envs, strict=True)):
                if self._pending:
                    break  # stopped while starting: start no more
                self.procs.append(
                    subprocess.Popen(cmd, env=env, process_group=0, preexec_fn=_die_with_parent)
                )
                logger.info(
                    "process %d of %d: pid %d: %s",
                    i,
                    len(self.cmds),
                    self.procs[-1].pid,
                    shlex.join(cmd),
                )
            self._wait_all(poll_s)
        finally:
            self._stop(signal.SIGTERM)
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.status or 0

    def _wait_all(self, poll_s: float) -> None:
        seen: set[int] = set()
        failed: list[tuple[int, int]] = []
        decide_at: float | None = None
        while True:
            while self._pending:
                self._stop(self._pending.pop(0))
            running = 0
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is None:
                    running += 1
                elif i not in seen:
                    seen.add(i)
                    self._log_exit(i, code)
                    if code != 0:
                        failed.append((i, code))
            if failed and self.status is None:
                now = time.monotonic()
                decide_at = now + self.settle_s if decide_at is None else decide_at
                if not running or now >= decide_at or any(c < 0 for _, c in failed):
                    self._fail(*root_cause(failed))
            if not running:
                return
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                for i, p in enumerate(self.procs):
                    if p.poll() is None:
                        logger.warning("process %d did not stop in %g s: SIGKILL", i, self.grace_s)
                        p.kill()
                self._kill_at = None
            time.sleep(poll_s)

    @staticmethod
    def _how(code: int) -> str:
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"

    def _log_exit(self, index: int, code: int) -> None:
        if code == 0:
            logger.info("process %d exited", index)
        else:
            logger.info("process %d %s", index, self._how(code))

    def _fail(self, index: int, code: int) -> None:
        self.status = exit_status(code)
        logger.error("process %d %s: stopping the others", index, self._how(code))
        self._stop(signal.SIGTERM)

    def _stop(self, sig: int) -> None:
        """Send ``sig`` to every running process; SIGKILL follows after the grace period."""
        for p in self.procs:
            p.send_signal(sig)  # does nothing to a process already reaped
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.grace_s

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        logger.warning("%s: passing it on to every process", signal.Signals(signum).name)
        if self.status is None:
            self.status = 128 + signum
        self._pending.append(signum)


def describe(cmds: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]]) -> list[str]:
    """One shell line per process (what ``--print`` shows)."""
    return [shell_line(c, e, os.environ) for c, e in zip(cmds, envs, strict=True)]
