"""``makerflow topics list|create``: the topic registry, and creating its topics on a broker.

makerflow topics list                       # registry, plus partitions on the broker
makerflow topics list --offline             # registry only
makerflow topics create --partitions 4      # every registered topic that is missing
makerflow topics create md.book md.trades   # just these

``create`` never changes a topic that exists: it prints each topic's partition count, and
when an existing topic has other than the ``--partitions`` asked for it says so and exits 1.
Adding partitions to a topic moves keys to other partitions (per-key order breaks for what
is in flight), so that is left to a deliberate ``kafka-topics --alter`` / ``rpk topic
add-partitions`` on a quiet topic (see docs/runbook.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from types import UnionType
from typing import Any

from confluent_kafka import KafkaException

from makerflow.kafka_admin import ensure_topics, list_topics
from makerflow.schemas.topics import DEAD_LETTERS, TOPICS, Topic, topic
from makerflow.sinks.kafka import DEAD_LETTER_PRODUCER_DEFAULTS

# The dead-letter topic takes values larger than the ones that failed (see sinks.kafka).
TOPIC_CONFIG = {
    DEAD_LETTERS.name: {"max.message.bytes": DEAD_LETTER_PRODUCER_DEFAULTS["message.max.bytes"]}
}


def value_names(t: Topic[Any]) -> str:
    vt = t.value_type
    types = typing.get_args(vt) if isinstance(vt, UnionType) else (vt,)
    return " | ".join(getattr(x, "__name__", str(x)) for x in types)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "topics", help="list the registered topics, or create them on a broker"
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    default_brokers = os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092")
    brokers_help = "Kafka bootstrap servers (default: $MAKERFLOW_BROKERS or 127.0.0.1:9092)"
    ls = verbs.add_parser("list", help="registered topics, their keys and value types")
    ls.add_argument("--brokers", default=default_brokers, help=brokers_help)
    ls.add_argument("--offline", action="store_true", help="do not ask the broker")
    ls.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    ls.set_defaults(func=run_list)

    mk = verbs.add_parser("create", help="create registered topics that do not exist yet")
    mk.add_argument("names", nargs="*", help="topics to create (default: all registered)")
    mk.add_argument("--brokers", default=default_brokers, help=brokers_help)
    mk.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions per new topic (default 1), checked against existing ones; one"
        " worker per partition is the unit of scale",
    )
    mk.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    mk.set_defaults(func=run_create)


def _brokers(args: argparse.Namespace) -> list[str]:
    return [b for b in str(args.brokers).split(",") if b]


def run_list(args: argparse.Namespace) -> int:
    on_broker: dict[str, int] | None = None
    status = 0
    if not args.offline:
        try:
            on_broker = list_topics(_brokers(args), timeout=args.timeout)
        except KafkaException as exc:
            print(f"broker {args.brokers} did not answer ({exc}); showing the registry only")
            status = 1
    rows = [
        (
            t.name,
            t.key,
            value_names(t),
            "-" if on_broker is None else str(on_broker.get(t.name, "missing")),
            t.doc,
        )
        for t in TOPICS.values()
    ]
    head = ("topic", "key", "values", "partitions", "about")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return status


def run_create(args: argparse.Namespace) -> int:
    asked = args.partitions
    partitions = 1 if asked is None else asked
    if partitions < 1:
        print("--partitions must be at least 1", file=sys.stderr)
        return 2
    try:
        names = [topic(n).name for n in args.names] or list(TOPICS)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    try:
        created = ensure_topics(
            _brokers(args),
            names,
            partitions=partitions,
            timeout=args.timeout,
            topic_config=TOPIC_CONFIG,
        )
        existing = list_topics(_brokers(args), timeout=args.timeout)
    except (KafkaException, RuntimeError) as exc:
        print(f"could not create topics on {args.brokers}: {exc}", file=sys.stderr)
        return 1
    status = 0
    for name in names:
        have = existing.get(name)
        if name in created:
            print(f"{name}: created ({have or partitions} partitions)")
            continue
        print(f"{name}: exists ({have} partitions)")
        if asked is not None and have is not None and have != asked:
            print(
                f"{name} has {have} partitions, not the {asked} asked for; it was left as it"
                " is (adding partitions moves keys: see docs/runbook.md, scale a service)",
                file=sys.stderr,
            )
            status = 1
    return status
