"""``guardian anomalies``: the anomaly detector's findings, and ``--verify``, which folds
the network's facts again and compares the anomalies it re-derives with those recorded."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from agents.network_facts import refold
from connectors.topic_reader import read_records
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.network_events import AnomalyDetected, NetworkFactRecorded
from schemas.topics import TopicSpec
from streams.network_facts import rules_of_settings
from streams.settings import AppSettings

EXIT_DIVERGED = 2


def add_listing_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    lists: str,
    verify: str,
    one: str,
) -> None:
    """A command of the network that lists what it ``lists``; ``--verify`` does
    ``verify``; ``--json`` prints ``one`` per line as JSON."""
    cmd = sub.add_parser(name, help=f"list {lists}")
    cmd.add_argument("--verify", action="store_true", help=verify)
    cmd.add_argument("--json", action="store_true", help=f"one {one} per line, as JSON")
    cmd.set_defaults(handler=handler)


def add_anomalies_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_listing_command(
        sub,
        "anomalies",
        _anomalies,
        lists="the anomaly detector's findings",
        verify="fold the network's facts again and compare the anomalies with those recorded",
        one="anomaly",
    )


def _anomalies(args: argparse.Namespace) -> int:
    settings = AppSettings.load()
    recorded = asyncio.run(read_all(settings, topics.ANOMALIES, AnomalyDetected))
    if not args.verify:
        for a in recorded:
            print(a.model_dump_json() if args.json else describe(a))
        if not recorded:
            print("no anomaly recorded")
        return 0
    facts = asyncio.run(read_all(settings, topics.NETWORK_FACTS, NetworkFactRecorded))
    again = [
        e
        for e in refold(facts, rules_of_settings(settings.network))
        if isinstance(e, AnomalyDetected)
    ]
    return report_refold(again, recorded, f"{len(facts)} facts", "the facts topic keeps a day")


def describe(a: AnomalyDetected) -> str:
    at = a.window_end.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{at}  {a.state:<8} {a.metric} of {a.subject}: {a.observed:.4g} against "
        f"{a.baseline:.4g} ({a.kind}, score {a.score:+.1f}, {a.samples} verdicts)"
    )


def report_refold(
    again: Sequence[Event], recorded: Sequence[Event], inputs: str, horizon: str
) -> int:
    """Print every difference between what a refold re-derived and what was recorded
    (a JSON line each), then a summary; the exit code (``EXIT_DIVERGED`` on any)."""
    differ = diverging(again, recorded)
    for line in differ:
        print(json.dumps(line))
    print(
        f"re-derived {len(again)} decisions from {inputs}, {len(recorded)} recorded, "
        f"{len(differ)} differ ({horizon}: a longer history cannot be folded again "
        "from its start)"
    )
    return EXIT_DIVERGED if differ else 0


def diverging(again: Sequence[Event], recorded: Sequence[Event]) -> list[dict[str, object]]:
    """Events only one side has, or that differ, by event id."""
    mine = {a.event_id: a for a in again}
    theirs = {a.event_id: a for a in recorded}
    out: list[dict[str, object]] = []
    for event_id in sorted(set(mine) | set(theirs)):
        a, b = mine.get(event_id), theirs.get(event_id)
        if a != b:
            out.append(
                {
                    "event_id": event_id,
                    "re_derived": None if a is None else a.model_dump(mode="json"),
                    "recorded": None if b is None else b.model_dump(mode="json"),
                }
            )
    return out


E = TypeVar("E", bound=Event)


async def read_all(settings: AppSettings, spec: TopicSpec, model: type[E]) -> list[E]:
    return await read_records(settings.kafka, spec, model, Codec())
