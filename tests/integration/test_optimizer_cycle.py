"""The system optimization cycle on a real bottleneck: one worker with a single
model-call slot and a 100 ms model (10 tasks a second) under 16 requests a second.

Its load reports show the slot busy and the backlog growing; the optimizer names the
bottleneck, proposes a second slot, the safety monitor approves it, it goes out as a
config version the running worker applies, and the before/after test keeps it because
the throughput rose. Every step is an event, in that order, and a refold of the
reports re-derives the optimizer's decisions.

And the other way: when the model behind the slot answers one call at a time, a second
slot gains little (it only hides the time between calls), less than the 30% that
cluster asks of a change, and the test rolls it back with a config version."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiohttp import web

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
from streams.chaos.model_server import completion
from streams.settings import NetworkSettings
from tests.fake_model_service import MODEL
from tests.integration.harness import Pipeline, pipeline, read_until, run_cli
from tests.integration.test_pipeline import wait_ready
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
RATE = 16.0
ANSWER = "The capital is the city where the national government of the country sits."
OPTIMIZER = {
    "load_report_s": 1,
    "optimizer_sustain": 3,
    "optimizer_settle": 1,
    "optimizer_measure": 3,
}


def _network_env(**changed: float) -> dict[str, str]:
    return {f"GUARDIAN_NETWORK_{k.upper()}": str(v) for k, v in (OPTIMIZER | changed).items()}


async def _until_compared(p: Pipeline) -> PerformanceCompared:
    """Load at ``RATE`` until the first before/after test ends; its result."""
    sent: list[str] = []
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
    return compared


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
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_scripted_worker(
            {"default": {"answer": ANSWER, "latency_ms": 100}},
            GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
            **_network_env(),
        )
        await wait_ready(p)
        compared = await _until_compared(p)
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


class OneAtATime:
    """An OpenAI-compatible model on loopback that answers one call at a time, 500 ms
    each: however many slots call it, it serves two calls a second."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.complete)
        self.server = LoopbackServer(app)

    async def complete(self, request: web.Request) -> web.Response:
        await request.read()
        async with self.lock:
            await asyncio.sleep(0.5)  # the model's own latency, one call at a time
        return web.json_response(completion(ANSWER, model=MODEL))


async def test_more_slots_in_front_of_a_serial_model_are_rolled_back(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    model = OneAtATime()
    async with model.server:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            p.start_served_worker(
                f"{model.server.origin}/v1",
                GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
                # Two tasks a second: longer windows count enough of them; the time
                # between one call and the next keeps one slot a little under 90% busy.
                **_network_env(
                    load_report_s=2,
                    optimizer_measure=5,
                    optimizer_min_gain=0.3,
                    optimizer_busy_share=0.75,
                ),
            )
            await wait_ready(p)
            compared = await _until_compared(p)
            history = await read_until(
                p, topics.CONFIG_HISTORY, ConfigChanged, lambda h: len(h) >= 3, timeout_s=60
            )
            log = p.log()

    assert compared.decision == "rollback", compared.reason
    assert (compared.previous_value, compared.tested_value) == ("null", "2")
    assert compared.after < compared.before * 1.3, "a second slot served few more tasks"
    assert "needs +30%" in compared.reason
    applied, restored = [c for c in history if CONCURRENCY_KEY in c.changed_keys][:2]
    assert applied.values[CONCURRENCY_KEY] == "2"
    assert restored.values[CONCURRENCY_KEY] == "null"
    assert restored.changed_by == "system-optimizer"
    assert restored.reason.startswith(f"rollback of proposal {compared.proposal_id}")
    assert restored.occurred_at >= compared.occurred_at
    assert "model-call slots: 2 -> 1" in log
