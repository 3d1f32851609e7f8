"""Priority lanes under saturation: high-priority requests sent after a backlog of
low-priority ones are served before most of it.

The worker has one model-call slot and its model is a real OpenAI-compatible server on
loopback that holds every answer until the test opens a gate, so the backlog is built
deterministically; what is asserted is the order of service, not wall time.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import ResponseDelivered, TaskAssigned
from tests.fake_model_service import MODEL, completion
from tests.integration.harness import Pipeline, covers, pipeline, read_until
from tests.loopback import LoopbackServer, free_port

pytestmark = pytest.mark.integration
LOWS, HIGHS = 12, 4
_TAG = re.compile(r"\b(low|high)-(\d+)\b")


class GatedModel:
    """Answers chat completions only once ``gate`` is set; notes the tag of each prompt
    (``low-3``, ``high-0``) in the order the calls arrive."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[str] = []
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.server = LoopbackServer(app)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
        found = _TAG.search(text)
        self.calls.append(found.group(0) if found else "other")
        self.arrived.set()
        await self.gate.wait()
        reply = completion("Its capital city is the largest city of that country.")
        return web.Response(body=reply.body, content_type="application/json")


def waiting_tasks(port: int) -> dict[str, float]:
    """The worker's ``guardian_specialist_lane_waiting_tasks`` gauge, by lane."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    return {
        sample.labels["lane"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "guardian_specialist_lane_waiting_tasks"
        for sample in family.samples
    }


async def wait_saturated(p: Pipeline, port: int, timeout_s: float = 60.0) -> None:
    """Until the high lane has a task waiting for each of its readers (two per slot) and
    the low lane one besides the one in the slot."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(waiting_tasks, port)
        if seen.get("high", 0) >= 2 and seen.get("low", 0) >= 1:
            return
        await asyncio.sleep(0.2)  # polling the metrics endpoint inside a deadline loop
    pytest.fail(f"the lanes never filled up: waiting {seen}\n{p.log()[-3000:]}")


async def test_high_priority_requests_overtake_an_earlier_low_priority_backlog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    model = GatedModel()
    metrics_port = free_port()
    async with model.server:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            p.start_worker(
                GUARDIAN_MODEL_BACKEND="openai",
                GUARDIAN_OPENAI_BASE_URL=f"{model.server.origin}/v1",
                GUARDIAN_OPENAI_MODEL=MODEL,
                GUARDIAN_GUARD_EMBEDDER="hashing",
                GUARDIAN_GUARD_PII_CHECK="false",
                GUARDIAN_REFINE_MAX_ROUNDS="1",
                GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
                GUARDIAN_WORKER_METRICS_PORT=str(metrics_port),
            )
            async with GuardianClient(p.kafka) as client:
                lows = [
                    await client.submit(f"low-{i}: What is the capital of country {i}?", priority=1)
                    for i in range(LOWS)
                ]
                # The one slot is taken by a low task whose answer is held back.
                await asyncio.wait_for(model.arrived.wait(), timeout=120)
                highs = [
                    await client.submit(f"high-{i}: What is the capital of land {i}?", priority=9)
                    for i in range(HIGHS)
                ]
                await wait_saturated(p, metrics_port)
                model.gate.set()
                ids = {r.request_id for r in lows + highs}
                responses = await read_until(
                    p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=120
                )
                high_lane = await read_until(p, topics.TASKS_HIGH, TaskAssigned, bool, timeout_s=0)
                low_lane = await read_until(p, topics.TASKS_LOW, TaskAssigned, bool, timeout_s=0)

    high_ids = {r.request_id for r in highs}
    assert {t.request_id for t in high_lane} == high_ids, "high tasks went to the high lane"
    assert {t.request_id for t in low_lane} == {r.request_id for r in lows}
    finished = [r.request_id for r in sorted(responses, key=lambda r: r.occurred_at)]
    assert len(finished) == LOWS + HIGHS, "one response per request"
    for rid in high_ids:
        lows_after = sum(other not in high_ids for other in finished[finished.index(rid) :])
        assert lows_after >= LOWS - 4, (
            f"a high-priority request waited behind the backlog: {finished}"
        )
    # The model saw the first low task (holding the slot), then the high ones.
    served = model.calls
    assert served[0].startswith("low"), served
    assert {c for c in served[: 1 + HIGHS + 2] if c.startswith("high")} == {
        f"high-{i}" for i in range(HIGHS)
    }, served
    assert sum(c.startswith("low") for c in served) == LOWS, "each task called the model once"
