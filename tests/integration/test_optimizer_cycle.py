"""The system optimization cycle on a real bottleneck: one worker with a single
model-call slot and a 100 ms model (10 tasks a second) under 16 requests a second.

Its load reports show the slot busy and the backlog growing; the optimizer names the
bottleneck, proposes a second slot, the safety monitor approves it, it goes out as a
config version the running worker applies, and the before/after test keeps it because
the throughput rose. Every step is an event, in that order, and a refold of the
reports re-derives the optimizer's decisions."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from agents.capacity import CONCURRENCY_KEY, refold
from connectors.client import GuardianClient
from schemas import topics
from schemas.network_events import (
    BottleneckIdentified,
    ConfigChanged,
    ImprovementProposed,
    PerformanceCompared,
    ProposalReviewed,
    WorkerLoadReported,
)
from streams.capacity import rules_of_settings
from streams.settings import NetworkSettings
from tests.integration.harness import pipeline, read_until, run_cli
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration
RATE = 16.0
OPTIMIZER = {
    "load_report_s": 1,
    "optimizer_sustain": 3,
    "optimizer_settle": 1,
    "optimizer_measure": 3,
}


async def _load(client: GuardianClient, sent: list[str]) -> None:
    """Requests at ``RATE`` a second until cancelled."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        request = await client.submit(f"What is the capital of country {len(sent)}?")
        sent.append(request.request_id)
        await asyncio.sleep(max(0.0, start + len(sent) / RATE - loop.time()))


async def test_a_starved_slot_pool_is_found_relieved_and_kept(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    answer = "The capital is the city where the national government of the country sits."
    sent: list[str] = []
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_scripted_worker(
            {"default": {"answer": answer, "latency_ms": 100}},
            GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
            **{f"GUARDIAN_NETWORK_{k.upper()}": str(v) for k, v in OPTIMIZER.items()},
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            loader = asyncio.create_task(_load(client, sent))
            try:
                [compared] = await read_until(
                    p, topics.PERFORMANCE, PerformanceCompared, bool, timeout_s=180
                )
            finally:
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loader
        # The decisions first, then the reports: every decision read was made on a report
        # read after it, so the refold of those reports re-derives all of them.
        bottlenecks = await read_until(
            p, topics.BOTTLENECKS, BottleneckIdentified, bool, timeout_s=0
        )
        proposals = await read_until(p, topics.PROPOSALS, ImprovementProposed, bool, timeout_s=0)
        reviews = await read_until(p, topics.REVIEWS, ProposalReviewed, bool, timeout_s=0)
        results = await read_until(p, topics.PERFORMANCE, PerformanceCompared, bool, timeout_s=0)
        history = await read_until(p, topics.CONFIG_HISTORY, ConfigChanged, bool, timeout_s=0)
        reports = await read_until(p, topics.WORKER_LOAD, WorkerLoadReported, bool, timeout_s=0)
        listed = await run_cli(["optimizer"], p.worker_env())
        log = p.log()

    [bottleneck] = [b for b in bottlenecks if b.kind == "model_slots"]
    [proposal] = [x for x in proposals if x.diagnosis_id == bottleneck.bottleneck_id]
    assert (proposal.key, proposal.current_value, proposal.proposed_value) == (
        CONCURRENCY_KEY,
        "null",
        "2",
    ), "one slot more: the worker's ceiling with one slot at start is two per lane"
    [review] = [r for r in reviews if r.proposal_id == proposal.proposal_id]
    assert review.approved, review.reasons
    [applied] = [c for c in history if CONCURRENCY_KEY in c.changed_keys]
    assert applied.values[CONCURRENCY_KEY] == "2"
    assert applied.changed_by == "system-optimizer"
    assert proposal.proposal_id in applied.reason
    assert compared.proposal_id == proposal.proposal_id
    assert compared.decision == "keep", compared.reason
    assert compared.after > compared.before * 1.1, "the throughput rose"
    assert compared.before == pytest.approx(10.0, rel=0.3), "one 100 ms slot: 10 tasks/s"
    assert "model-call slots: 1 -> 2" in log
    assert f"test of {proposal.proposal_id[:12]} {CONCURRENCY_KEY} null -> 2: keep" in listed
    assert "bottleneck model_slots (cluster)" in listed

    order = [
        bottleneck.occurred_at,
        proposal.occurred_at,
        review.occurred_at,
        applied.occurred_at,
        compared.applied_at,
        compared.occurred_at,
    ]
    assert order == sorted(order), "the cycle's events in order"
    assert any(r.slots == 2 for r in reports if r.window_start >= applied.occurred_at)

    again = {
        e.event_id
        for e in refold(reports, rules_of_settings(NetworkSettings.model_validate(OPTIMIZER)))
    }
    decided = [
        *bottlenecks,
        *(x for x in proposals if x.proposed_by == "system-optimizer"),
        *results,
    ]
    assert {e.event_id for e in decided} <= again, "the refold re-derives every decision"
