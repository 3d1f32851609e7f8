"""The guardian network's first stages: the diagnoses the aggregator decides go out,
the optimizer turns them into proposals, the safety monitor reviews those."""

from __future__ import annotations

import logging

from agents.optimizer import propose
from agents.safety import SafetyRules, review
from schemas import topics
from schemas.network_events import FailureDiagnosed, ImprovementProposed
from streams.live_config import LiveConfig
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


def register(rt: Runtime, live: LiveConfig) -> None:
    """The optimizer and safety monitor stages."""

    @rt.app.agent(rt.topic(topics.DIAGNOSES), name="optimizer")
    async def optimizer(stream: object) -> None:
        await run(rt, "optimizer", stream, lambda r: on_diagnosis(rt, r))

    @rt.app.agent(rt.topic(topics.PROPOSALS), name="safety_monitor")
    async def safety_monitor(stream: object) -> None:
        await run(rt, "safety_monitor", stream, lambda r: on_proposal(rt, live, r))


async def emit_diagnosis(rt: Runtime, diagnosis: FailureDiagnosed) -> None:
    _log.warning("diagnosis: %s", diagnosis.summary)
    await rt.emit(diagnosis)


async def on_diagnosis(rt: Runtime, record: Record) -> None:
    diagnosis = rt.codec.decode(record.value, FailureDiagnosed)
    for proposal in propose(diagnosis, rt.config, rt.clock()):
        await rt.emit(proposal)


async def on_proposal(rt: Runtime, live: LiveConfig, record: Record) -> None:
    proposal = rt.codec.decode(record.value, ImprovementProposed)
    decision = review(proposal, rt.config, live.history, rt.clock(), SafetyRules())
    _log.warning(
        "proposal %s (%s=%s) %s: %s",
        proposal.proposal_id,
        proposal.key,
        proposal.proposed_value,
        "approved" if decision.approved else "rejected",
        "; ".join(decision.reasons),
    )
    await rt.emit(decision)
