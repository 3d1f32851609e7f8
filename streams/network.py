"""The guardian network's first stages: the diagnostician groups failing verdicts over
windows (a verdict observer), the optimizer turns diagnoses into proposals, the safety
monitor reviews them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from agents.diagnosis import DiagnosisWindow, diagnose, next_window, observe, open_window
from agents.optimizer import propose
from agents.safety import SafetyRules, review
from schemas import topics
from schemas.network_events import FailureDiagnosed, ImprovementProposed
from schemas.request_events import VerdictIssued
from streams.live_config import LiveConfig
from streams.runtime import Runtime
from streams.stage import Record, run
from streams.verdict_watch import VerdictObserver

_log = logging.getLogger(__name__)


@dataclass
class Diagnostician:
    """This worker's open window over the verdicts of its partitions."""

    window: DiagnosisWindow | None = None


def register(rt: Runtime, live: LiveConfig) -> VerdictObserver:
    """The optimizer and safety monitor stages and the diagnostician's timer; returns the
    diagnostician, for the verdict watchers to feed."""
    diag = Diagnostician()
    n = rt.settings.network

    @rt.app.timer(interval=min(n.diagnosis_window_s, 30.0))  # type: ignore[untyped-decorator]
    async def close_windows() -> None:
        await roll(rt, diag, rt.clock())

    @rt.app.agent(rt.topic(topics.DIAGNOSES), name="optimizer")
    async def optimizer(stream: object) -> None:
        await run(rt, "optimizer", stream, lambda r: on_diagnosis(rt, r))

    @rt.app.agent(rt.topic(topics.PROPOSALS), name="safety_monitor")
    async def safety_monitor(stream: object) -> None:
        await run(rt, "safety_monitor", stream, lambda r: on_proposal(rt, live, r))

    return VerdictObserver("diagnostician", lambda v: on_verdict(rt, diag, v))


async def on_verdict(rt: Runtime, diag: Diagnostician, verdict: VerdictIssued) -> None:
    """Count ``verdict`` in the open window. One older than a window is history (a
    replay from the earliest offset, or a long lag): no open window can hold it, and
    opening one at its time would diagnose windows long gone."""
    length = timedelta(seconds=rt.settings.network.diagnosis_window_s)
    if verdict.occurred_at < rt.clock() - length:
        return
    await roll(rt, diag, verdict.occurred_at)
    assert diag.window is not None
    diag.window = observe(diag.window, verdict)


async def roll(rt: Runtime, diag: Diagnostician, now: datetime) -> None:
    """Close every window that ended before ``now``, emitting its diagnoses."""
    n = rt.settings.network
    length = timedelta(seconds=n.diagnosis_window_s)
    if diag.window is None:
        diag.window = open_window(now, length)
    while now >= diag.window.end:
        for diagnosis in diagnose(diag.window, rt.clock(), n.min_failures, n.min_failure_rate):
            _log.warning("diagnosis: %s", diagnosis.summary)
            await rt.emit(diagnosis)
        diag.window = next_window(diag.window)
        if now - diag.window.end > length:  # a long quiet spell: start afresh
            diag.window = open_window(now, length)


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
