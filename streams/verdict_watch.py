"""The verdict watchers: every verdict, on whichever partition and worker, is recorded
as a compact fact on the network's single-partition topic, where one aggregator folds
the facts of all partitions (``streams.network_facts``)."""

from __future__ import annotations

from agents.network_facts import verdict_fact
from schemas import topics
from schemas.request_events import VerdictIssued
from streams.facts_topic import send_fact
from streams.runtime import Runtime
from streams.stage import Record, run

STAGE = "verdict_watchers"


def register(rt: Runtime) -> None:
    """One faust agent on the verdicts topic, recording each verdict as a fact."""

    @rt.app.agent(rt.topic(topics.VERDICTS), name=STAGE)
    async def verdict_watchers(stream: object) -> None:
        await run(rt, STAGE, stream, lambda r: watch(rt, r))


async def watch(rt: Runtime, record: Record) -> None:
    """Decode ``record`` (undecodable: dead-lettered under this stage) and record its
    fact, with the experiment terms of the config version it was decided under."""
    verdict = rt.codec.decode(record.value, VerdictIssued)
    experiment = rt.config_at(verdict.config_version).experiment
    await send_fact(rt, verdict_fact(verdict, experiment, rt.clock()))
