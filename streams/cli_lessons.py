"""``guardian lessons``: every version of every lesson the knowledge synthesizer learned,
and ``--verify``, which folds the network's facts again and compares the lessons it
re-derives with those recorded (a lesson's kept or retired version follows from its
experiment's conclusion, which ``guardian replay`` and the experiments topic cover)."""

from __future__ import annotations

import argparse
import asyncio

from agents.network_facts import refold
from schemas import topics
from schemas.network_events import LessonLearned, NetworkFactRecorded
from streams.cli_anomalies import add_listing_command, read_all, report_refold
from streams.network_facts import rules_of_settings
from streams.settings import AppSettings


def add_lessons_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_listing_command(
        sub,
        "lessons",
        _lessons,
        lists="the lessons learned, kept and retired",
        verify="fold the network's facts again and compare the lessons learned with those recorded",
        one="lesson version",
    )


def _lessons(args: argparse.Namespace) -> int:
    settings = AppSettings.load()
    recorded = asyncio.run(read_all(settings, topics.LESSONS, LessonLearned))
    if not args.verify:
        for lesson in sorted(recorded, key=lambda v: (v.occurred_at, v.version)):
            print(lesson.model_dump_json() if args.json else describe(lesson))
        if not recorded:
            print("no lesson learned")
        return 0
    facts = asyncio.run(read_all(settings, topics.NETWORK_FACTS, NetworkFactRecorded))
    rules = rules_of_settings(settings.network)
    again = [e for e in refold(facts, rules) if isinstance(e, LessonLearned)]
    learned = [v for v in recorded if v.state == "learned"]
    return report_refold(again, learned, f"{len(facts)} facts", "the facts topic keeps a day")


def describe(lesson: LessonLearned) -> str:
    at = lesson.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{at}  {lesson.lesson_id[:12]} v{lesson.version} {lesson.state:<8} "
        f"[{lesson.scope}/{lesson.failure_class}] {lesson.text} ({lesson.reason})"
    )
