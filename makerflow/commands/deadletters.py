"""``makerflow deadletters list|replay``: read the dead-letter topic, and send letters back.

makerflow deadletters list                                   # every letter, oldest first
makerflow deadletters list --step ticks.in_md_trades --json  # one step's, as JSON lines
makerflow deadletters replay --step ticks.in_md_trades --dry-run
makerflow deadletters replay --step ticks.in_md_trades       # raw bytes back to md.trades
makerflow deadletters replay --step quoter.quoting --to orders.review

A letter keeps the input whole (raw bytes, key) with where it came from (topic, partition,
offset), the step that refused it and why. ``replay`` produces the raw value again, with its
key, to the topic it came from (or ``--to``): once the cause is fixed (a producer's bug, a
schema the service did not know yet) the service reads it as new input; a letter whose cause
remains is dead-lettered again. Letters written by a step that has no source topic (an
operator refusing a decoded event) need ``--to``. Replaying appends: pick letters with
``--step`` / ``--from-topic`` / ``--reason`` / ``--since-offset`` so each goes back once.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from makerflow.kafka_admin import Sender, producer, read_topic
from makerflow.schemas.codec import EventDecodeError
from makerflow.schemas.events import DeadLetter
from makerflow.schemas.topics import DEAD_LETTERS


@dataclass(frozen=True)
class Letter:
    """A dead letter and its own offset on the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "deadletters",
        help="list the dead-letter topic, or replay letters to the topic they came from",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--brokers",
        default=os.environ.get("MAKERFLOW_BROKERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $MAKERFLOW_BROKERS or 127.0.0.1:9092)",
    )
    common.add_argument("--topic", default=DEAD_LETTERS.name, help="the dead-letter topic")
    common.add_argument("--step", help="only letters of this step (e.g. ticks.in_md_trades)")
    common.add_argument("--from-topic", help="only letters that came from this topic")
    common.add_argument("--reason", help="only letters whose reason contains this text")
    common.add_argument(
        "--since-offset", type=int, default=0, help="only letters at or after this offset"
    )
    common.add_argument(
        "--idle",
        type=float,
        default=2.0,
        help="once every partition is read to its end, stop after this many quiet seconds",
    )
    ls = verbs.add_parser("list", parents=[common], help="print the letters, oldest first")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=run_list)
    rp = verbs.add_parser(
        "replay", parents=[common], help="produce the letters' raw values to their topic again"
    )
    rp.add_argument("--to", help="produce to this topic instead of each letter's own")
    rp.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    rp.set_defaults(func=run_replay)


def read_letters(args: argparse.Namespace) -> tuple[list[Letter], int]:
    """The selected letters, and how many messages of the topic were not letters."""
    brokers = [b for b in str(args.brokers).split(",") if b]
    out: list[Letter] = []
    unreadable = 0
    for msg in read_topic(brokers, args.topic, idle=args.idle):
        try:
            letter = DEAD_LETTERS.codec.decode(msg.value())
        except EventDecodeError:
            unreadable += 1
            continue
        item = Letter(int(msg.partition() or 0), int(msg.offset() or 0), letter)
        if selected(item, args):
            out.append(item)
    out.sort(key=lambda x: (x.letter.ts, x.partition, x.offset))
    return out, unreadable


def selected(item: Letter, args: argparse.Namespace) -> bool:
    d = item.letter
    return (
        (args.step is None or d.step == args.step)
        and (args.from_topic is None or d.topic == args.from_topic)
        and (args.reason is None or args.reason in d.reason)
        and item.offset >= args.since_offset
    )


def as_json(item: Letter) -> dict[str, Any]:
    d = item.letter
    return {
        "partition": item.partition,
        "offset": item.offset,
        "ts": d.ts,
        "step": d.step,
        "reason": d.reason,
        "topic": d.topic,
        "source_partition": d.partition,
        "source_offset": d.offset,
        "key": d.key.decode(errors="replace") if d.key is not None else None,
        "raw_base64": base64.b64encode(d.raw).decode(),
    }


def run_list(args: argparse.Namespace) -> int:
    letters, unreadable = read_letters(args)
    for item in letters:
        if args.json:
            print(json.dumps(as_json(item)))
            continue
        d = item.letter
        source = f"{d.topic}[{d.partition}]@{d.offset}" if d.topic else "-"
        raw = d.raw[:60].decode(errors="replace").replace("\n", " ")
        print(f"{item.offset:>8}  {d.step:<28} {source:<28} {d.reason}  | {raw}")
    print(f"{len(letters)} letters", file=sys.stderr)
    if unreadable:
        print(f"{unreadable} messages on {args.topic} are not dead letters", file=sys.stderr)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    letters, _ = read_letters(args)
    homeless = [x for x in letters if not (args.to or x.letter.topic)]
    if homeless:
        print(
            f"{len(homeless)} letters have no source topic (step {homeless[0].letter.step}):"
            " say where they go with --to",
            file=sys.stderr,
        )
        return 2
    by_topic: dict[str, int] = {}
    for x in letters:
        target = str(args.to or x.letter.topic)
        by_topic[target] = by_topic.get(target, 0) + 1
    if args.dry_run:
        for target, n in sorted(by_topic.items()):
            print(f"would send {n} letters to {target}")
        return 0
    brokers = [b for b in str(args.brokers).split(",") if b]
    out = Sender(producer(brokers))
    for x in letters:
        out.send(str(args.to or x.letter.topic), x.letter.key, x.letter.raw)
    out.flush()
    for target, n in sorted(by_topic.items()):
        print(f"sent {n} letters to {target}")
    return 0
