"""Serve the process's Prometheus metrics over HTTP (``/metrics``).

Every service flow module calls :func:`serve_metrics` when it builds its flow. The port comes
from the argument, else ``MAKERFLOW_METRICS_PORT``, else 9464 (``0`` picks a free port). It is
idempotent: one server per process, whatever number of flows or workers ask for it, so the
all-in-one flow that imports several service modules still serves once.
"""

from __future__ import annotations

import logging
import os
import threading

from prometheus_client import start_http_server

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9464
ENV_PORT = "MAKERFLOW_METRICS_PORT"
ENV_ADDR = "MAKERFLOW_METRICS_ADDR"

_lock = threading.Lock()
_served: int | None = None


def metrics_port_from_env(env: dict[str, str] | None = None) -> int:
    e = os.environ if env is None else env
    raw = e.get(ENV_PORT, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_PORT}={raw!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{ENV_PORT}={raw!r} is not a port number (0-65535)")
    return port


def serve_metrics(port: int | None = None, addr: str | None = None) -> int:
    """Start the ``/metrics`` HTTP server once per process; return the port it listens on.

    A second call returns the first call's port without starting anything. ``addr`` defaults
    to ``MAKERFLOW_METRICS_ADDR`` or ``0.0.0.0`` (Prometheus scrapes from another host)."""
    global _served
    with _lock:
        if _served is not None:
            return _served
        want = metrics_port_from_env() if port is None else port
        host = addr or os.environ.get(ENV_ADDR) or "0.0.0.0"
        try:
            server, _thread = start_http_server(want, addr=host)
        except OSError as exc:
            raise OSError(
                f"cannot serve metrics on {host}:{want}: {exc}; set {ENV_PORT} to a free port"
            ) from exc
        _served = int(server.server_port)
        logger.info("serving Prometheus metrics on http://%s:%d/metrics", host, _served)
        return _served
