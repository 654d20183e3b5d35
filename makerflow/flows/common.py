"""What every service flow shares: settings from the environment, and typed topic I/O.

A service module builds its dataflow from :class:`FlowSettings` and exposes it as ``flow``,
so users start it with ``python -m bytewax.run makerflow.flows.<service>:flow`` (add
``-w N`` for N workers; one worker per partition is the unit of scale).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from makerflow.flows.config_file import check_config, service_of_module
from makerflow.heap import start_heap_trimmer, trim_period
from makerflow.schemas.config import ConfigError
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.topics import Topic
from makerflow.sinks.kafka import dead_letter_output, kafka_output
from makerflow.sources.kafka import EventStreams, kafka_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowSettings:
    """Where a service flow reads and writes.

    Environment: ``MAKERFLOW_BROKERS`` (comma-separated, default ``127.0.0.1:9092``),
    ``MAKERFLOW_CONFIG`` (a TOML file for the service's own config, optional),
    ``MAKERFLOW_TAIL`` (``0`` to stop at the end of the topics: replay and backtests),
    ``MAKERFLOW_FROM`` (``beginning`` or ``end``), ``MAKERFLOW_KAFKA_FETCH_WAIT_MS`` (every
    consumer's ``fetch.wait.max.ms``; default: ``sources.kafka.CONSUMER_DEFAULTS``, 5 ms, for
    ``LOW_LATENCY_TOPICS``, librdkafka's 500 ms for the rest).
    """

    brokers: tuple[str, ...] = ("127.0.0.1:9092",)
    config_path: str | None = None
    tail: bool = True
    from_beginning: bool = True
    fetch_wait_ms: int | None = None
    """How long the broker may hold a consumer's fetch that finds nothing (None: the
    default). tansu answers only at the end of it; Kafka and Redpanda as soon as data comes,
    so there a long wait (librdkafka's 500) costs no latency and fewer idle fetches."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> FlowSettings:
        e = os.environ if env is None else env
        brokers = tuple(b for b in e.get("MAKERFLOW_BROKERS", "127.0.0.1:9092").split(",") if b)
        wait = e.get("MAKERFLOW_KAFKA_FETCH_WAIT_MS") or None
        if wait is not None and not (wait.isdigit() and int(wait) >= 1):
            raise ConfigError(
                f"MAKERFLOW_KAFKA_FETCH_WAIT_MS must be a whole number of ms >= 1, got {wait!r}"
            )
        return cls(
            brokers=brokers,
            config_path=e.get("MAKERFLOW_CONFIG") or None,
            tail=e.get("MAKERFLOW_TAIL", "1") not in ("0", "false", "no"),
            from_beginning=e.get("MAKERFLOW_FROM", "beginning") != "end",
            fetch_wait_ms=None if wait is None else int(wait),
        )

    @property
    def starting_offset(self) -> int:
        return OFFSET_BEGINNING if self.from_beginning else OFFSET_END


class TopicIO:
    """Typed reads and writes of registered topics for one flow; collects dead letters from
    every read so the flow writes them once."""

    def __init__(self, flow: Dataflow, settings: FlowSettings) -> None:
        self.flow = flow
        self.settings = settings
        self._dead: list[Stream[DeadLetter]] = []
        wait = settings.fetch_wait_ms
        self._consumer_config = None if wait is None else {"fetch.wait.max.ms": str(wait)}

    def read(
        self,
        topic: Topic[Any],
        *,
        end_markers: bool = False,
        caught_up_markers: bool = False,
        mark_keys: Sequence[str] = (),
        caught_up_once: bool = False,
    ) -> Stream[Any]:
        """``topic``'s events; with ``end_markers`` and a bounded replay, also an
        :class:`~makerflow.schemas.markers.InputEnded` after each partition's last event
        (for an operator that merges its inputs in event time and knows the marker); with
        ``caught_up_markers``, also :class:`~makerflow.schemas.markers.CaughtUp` markers
        (see ``kafka_input``, also for ``mark_keys`` and ``caught_up_once``)."""
        s: EventStreams[Any] = kafka_input(
            f"in_{topic.name.replace('.', '_')}",
            self.flow,
            brokers=self.settings.brokers,
            topic=topic,
            tail=self.settings.tail,
            starting_offset=self.settings.starting_offset,
            end_markers=end_markers,
            caught_up_markers=caught_up_markers,
            mark_keys=mark_keys,
            caught_up_once=caught_up_once,
            add_config=self._consumer_config,
        )
        self._dead.append(s.errs)
        return s.oks

    def read_many(self, topics: Sequence[Topic[Any]]) -> list[Stream[Any]]:
        return [self.read(t) for t in topics]

    def write(self, stream: Stream[Any], topic: Topic[Any]) -> None:
        kafka_output(
            f"out_{topic.name.replace('.', '_')}",
            stream,
            brokers=self.settings.brokers,
            topic=topic,
        )

    def dead_letters(self, extra: Sequence[Stream[DeadLetter]] = ()) -> None:
        """Write every dead letter of the flow to the dead-letter topic. Call once, last."""
        streams = [*self._dead, *extra]
        if not streams:
            return
        merged = op.merge("dead_letters", *streams) if len(streams) > 1 else streams[0]
        dead_letter_output("out_deadletter", merged, brokers=self.settings.brokers)


def configure_service_logging(env: Mapping[str, str] | None = None) -> None:
    """Log to stderr at ``MAKERFLOW_LOG_LEVEL`` (default INFO) when nothing has configured
    logging yet: under ``python -m bytewax.run`` nobody does, and a service's own warnings
    ("cannot reach Kafka at ...") would otherwise print bare or not at all."""
    e = os.environ if env is None else env
    root = logging.getLogger()
    if root.handlers:
        return
    level = getattr(logging, e.get("MAKERFLOW_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def check_service_config(service: str | None, env: Mapping[str, str] | None = None) -> None:
    """Validate the whole configuration (``MAKERFLOW_CONFIG`` and the ``MAKERFLOW__...``
    overrides) before the service starts anything; on an error say which table and key and
    exit with status 2, without a traceback (the message is all there is to read)."""
    e = os.environ if env is None else env
    try:
        check_config(e.get("MAKERFLOW_CONFIG") or None, service, e)
        trim_period(e)
    except ConfigError as exc:
        logger.critical("configuration error, %s not started: %s", service or "flow", exc)
        raise SystemExit(2) from None


def lazy_flow(build: Callable[[], Dataflow]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds the service's ``flow`` on first access.

    Building at import would need the service's environment (brokers, config file) merely to
    import its ``build_flow`` (the all-in-one flow and the tests do). Accessing ``flow`` is
    what ``python -m bytewax.run makerflow.flows.<svc>:flow`` does, so that is also where the
    service starts serving ``/metrics`` (``MAKERFLOW_METRICS_PORT``, default 9464) and
    handing freed heap back to the system (``MAKERFLOW_MALLOC_TRIM_S``, see
    :mod:`makerflow.heap`).
    """
    built: list[Dataflow] = []
    service = service_of_module(build.__module__)

    def module_getattr(name: str) -> Any:
        if name != "flow":
            raise AttributeError(name)
        if not built:
            from makerflow.sinks.metrics import serve_metrics

            configure_service_logging()
            check_service_config(service)
            serve_metrics(None)
            start_heap_trimmer(os.environ)
            built.append(build())
            freeze_start_up_heap()
        return built[0]

    return module_getattr


def freeze_start_up_heap() -> None:
    """Move everything alive after start-up (modules, classes, the built flow: ~33 000
    objects in the ticks service) out of the cyclic garbage collector's reach.

    Python's full collection walks every tracked object; with the start-up heap in it, one
    costs 20-24 ms of CPU (30-70 ms of wall time on the shared cores), a pause of the worker
    in the middle of a book update's way to its tick, four times the 5 ms target. Frozen,
    the objects are never walked again (a full collection of what is left: microseconds);
    they are what the service keeps until it exits anyway. The garbage made while starting is
    collected first, so nothing freeable is kept. Full collections are rare (none of 1 ms or
    more in the 20-30 s stretches of ``benchmarks/service_latency.py --gc-log``): this bounds
    the odd pause, it does not move the medians.
    """
    gc.collect()
    gc.freeze()
