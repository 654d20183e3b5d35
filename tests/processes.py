"""Process clean-up shared by the tests that start services, brokers or supervisors."""

from __future__ import annotations

import subprocess
from typing import Any


def kill_if_running(proc: subprocess.Popen[Any] | None) -> None:
    """SIGKILL a process the test did not see end (a failed assertion, a timeout) and reap
    it, so no test leaves a process behind; one that ended is left as it is."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
