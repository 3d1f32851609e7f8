"""The knowledge synthesizer's stage: a lesson the network aggregator learned
(``agents.lessons``) is proposed as a change of ``specialist.lessons`` under the live
configuration; the safety monitor reviews it and the experiment queue tests it. When its
experiment concludes, the lesson's next version says whether it was kept or retired."""

from __future__ import annotations

import logging

from agents import lessons
from schemas import topics
from schemas.network_events import ExperimentConcluded, ImprovementProposed, LessonLearned
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
STAGE = "knowledge_synthesizer"


def register(rt: Runtime) -> None:
    @rt.app.agent(rt.topic(topics.LESSONS), name=STAGE)
    async def knowledge_synthesizer(stream: object) -> None:
        await run(rt, STAGE, stream, lambda r: on_lesson(rt, r))


async def on_lesson(rt: Runtime, record: Record) -> None:
    lesson = rt.codec.decode(record.value, LessonLearned)
    proposal = lessons.propose(lesson, rt.config)
    if proposal is None:
        return
    _log.warning("lesson %s proposed for %s tasks", lesson.lesson_id, lesson.scope)
    await rt.emit(proposal)


async def settle(
    rt: Runtime,
    result: ExperimentConcluded,
    proposals: list[ImprovementProposed],
    learned: list[LessonLearned],
) -> None:
    """The lesson's kept or retired version, when ``result`` concludes a lesson's test."""
    lesson = lessons.to_settle(result, proposals, learned)
    if lesson is None:
        return
    outcome = lessons.settled(lesson, result)
    _log.warning("lesson %s %s: %s", outcome.lesson_id, outcome.state, outcome.reason)
    await rt.emit(outcome)
