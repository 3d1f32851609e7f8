"""guardian_stage: score every answer with the guardians and issue the verdict."""

from __future__ import annotations

import asyncio

from agents.experiment_plan import config_for
from agents.guardian import Signals, judge, measure, verdict_for
from schemas import topics
from schemas.request_events import SpecialistAnswered, VerdictIssued
from streams.runtime import Runtime
from streams.stage import Record, run


def register(rt: Runtime) -> None:
    if rt.settings.worker.guardian_inline:
        return  # the specialist stage scores each answer as it emits it
    source = rt.topic(topics.ANSWERS)

    @rt.app.agent(
        source, name="guardian_stage", concurrency=rt.settings.worker.guardian_concurrency
    )
    async def guardian_stage(stream: object) -> None:
        await run(rt, "guardian", stream, lambda record: handle(rt, record))


async def handle(rt: Runtime, record: Record) -> None:
    answer = rt.codec.decode(record.value, SpecialistAnswered)
    await rt.emit(await score(rt, answer))


async def score(rt: Runtime, answer: SpecialistAnswered) -> VerdictIssued:
    """The guardians' verdict on ``answer``, under the configuration its request was
    admitted with (and the request's experiment arm)."""
    config = rt.config_at(answer.config_version)
    policy = config_for(config, answer.variant).guardian
    if answer.status == "ok" and answer.content.strip():
        # Embedding and PII scans are CPU work: keep them off the event loop.
        signals = await asyncio.to_thread(measure, answer, rt.ports.embedder, rt.ports.pii)
    else:
        signals = Signals(alignment=0.0, new_pii=())
    assessment = judge(answer, signals, policy)
    for part in assessment.scores:
        rt.metrics.guardian_scores.labels(part.guardian).observe(part.score)
    rt.metrics.guardian_scores.labels("overall").observe(assessment.score)
    rt.metrics.verdicts.labels("pass" if assessment.passed else "fail").inc()
    return verdict_for(answer, assessment, policy, rt.clock(), config.version)
