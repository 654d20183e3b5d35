"""``makerflow broker``: a Kafka-protocol broker (tansu, memory storage) on loopback."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import Any

from makerflow.broker import Broker


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "broker", help="run a Kafka-protocol broker on loopback (tansu, memory storage)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Broker(host=args.host, port=args.port) as broker:
        print(f"broker listening on {broker.bootstrap} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0
