"""Priority lanes under saturation: high-priority requests sent after a backlog of
low-priority ones are served before most of it, also by a worker started after a crash.

The worker has one model-call slot and its model is a real OpenAI-compatible server on
loopback that holds every answer until the test lets it go, so the backlog is built
deterministically. Answers are let go one per delivered response, so the order of the
responses is the order of service, not a race between partitions downstream or between a
free slot and a lane stage fetching its next task; what is asserted is that order, not wall
time.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import ResponseDelivered, TaskAssigned
from tests.fake_model_service import completion
from tests.integration.harness import Pipeline, pipeline, read_until
from tests.loopback import LoopbackServer, free_port

pytestmark = pytest.mark.integration
LOWS, HIGHS = 12, 4
_TAG = re.compile(r"\b(low|high)-(\d+)\b")


class GatedModel:
    """Answers chat completions one call per ``release()``; notes the tag of each prompt
    (``low-3``, ``high-0``) in the order the calls arrive. A call whose caller went away
    takes no release."""

    def __init__(self) -> None:
        self.permits = 0
        self.changed = asyncio.Event()
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
        while True:
            if _gone(request):  # its worker was killed: the call takes no permit
                return web.Response(status=499)
            if self.permits:
                self.permits -= 1
                break
            self.changed.clear()
            await self.changed.wait()
        reply = completion("Its capital city is the largest city of that country.")
        return web.Response(body=reply.body, content_type="application/json")

    def release(self) -> None:
        self.permits += 1
        self.changed.set()


def _gone(request: web.Request) -> bool:
    """The caller of ``request`` closed its connection."""
    return request.transport is None or request.transport.is_closing()


def one_answer_per_response(model: GatedModel, ids: set[str]) -> Callable[[list[Any]], bool]:
    """A ``read_until`` predicate that lets the model answer one more call each time a
    further request of ``ids`` got its final response; done when all of them have."""
    model.release()
    released = 1

    def done(events: list[Any]) -> bool:
        nonlocal released
        answered = len(ids & {e.request_id for e in events if e.is_final})
        while released <= answered and released < len(ids):
            model.release()
            released += 1
        return answered == len(ids)

    return done


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


async def wait_saturated(p: Pipeline, port: int, timeout_s: float = 90.0) -> None:
    """Until every reader of the high and low lanes (two per slot) holds a task: one is in
    the slot, the other three wait for it."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(waiting_tasks, port)
        if seen.get("high", 0) + seen.get("low", 0) >= 3 and seen.get("high", 0) >= 1:
            return
        await asyncio.sleep(0.2)  # polling the metrics endpoint inside a deadline loop
    pytest.fail(f"the lanes never filled up: waiting {seen}\n{p.log()[-3000:]}")


def start_worker(p: Pipeline, model: GatedModel, metrics_port: int) -> None:
    p.start_served_worker(
        f"{model.server.origin}/v1",
        GUARDIAN_REFINE_MAX_ROUNDS="1",
        GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
        GUARDIAN_WORKER_METRICS_PORT=str(metrics_port),
    )


async def backlog(
    p: Pipeline, client: GuardianClient, model: GatedModel, metrics_port: int
) -> tuple[set[str], set[str]]:
    """Low-priority requests, then (once a low task holds the slot) high-priority ones;
    returns once the lanes are full. The ids of the lows and of the highs."""
    lows = [
        await client.submit(f"low-{i}: What is the capital of country {i}?", priority=1)
        for i in range(LOWS)
    ]
    await asyncio.wait_for(model.arrived.wait(), timeout=120)
    highs = [
        await client.submit(f"high-{i}: What is the capital of land {i}?", priority=9)
        for i in range(HIGHS)
    ]
    await wait_saturated(p, metrics_port)
    return {r.request_id for r in lows}, {r.request_id for r in highs}


def assert_highs_first(served: list[str], *, first: int = 1) -> None:
    """After the ``first`` calls already in the slot, the model saw the high tasks."""
    highs = {f"high-{i}" for i in range(HIGHS)}
    assert highs <= set(served[: first + HIGHS + 2]), served
    assert {c for c in served if c.startswith("low")} == {f"low-{i}" for i in range(LOWS)}


async def test_high_priority_requests_overtake_an_earlier_low_priority_backlog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    model = GatedModel()
    metrics_port = free_port()
    async with model.server:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            start_worker(p, model, metrics_port)
            async with GuardianClient(p.kafka) as client:
                lows, highs = await backlog(p, client, model, metrics_port)
                responses = await read_until(
                    p,
                    topics.RESPONSES,
                    ResponseDelivered,
                    one_answer_per_response(model, lows | highs),
                    timeout_s=240,
                )
                high_lane = await read_until(p, topics.TASKS_HIGH, TaskAssigned, bool, timeout_s=0)
                low_lane = await read_until(p, topics.TASKS_LOW, TaskAssigned, bool, timeout_s=0)

    assert {t.request_id for t in high_lane} == highs, "high tasks went to the high lane"
    assert {t.request_id for t in low_lane} == lows
    finals = [r for r in responses if r.is_final]
    finished = [r.request_id for r in sorted(finals, key=lambda r: r.occurred_at)]
    assert len(finished) == LOWS + HIGHS, "one response per request"
    assert finished[0] in lows, "the low task already in the slot finished first"
    assert highs <= set(finished[: 1 + HIGHS + 2]), (
        f"a high-priority request waited behind the backlog: {finished}"
    )
    assert model.calls[0].startswith("low"), model.calls
    assert_highs_first(model.calls)
    assert len(model.calls) == LOWS + HIGHS, "each task called the model once"


async def test_the_lanes_outlive_a_crashed_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A worker killed with both lanes full answered nothing; the backlog waited in Kafka,
    and the next worker serves the high lane first."""
    model = GatedModel()
    async with model.server:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            start_worker(p, model, first_port := free_port())
            async with GuardianClient(p.kafka) as client:
                lows, highs = await backlog(p, client, model, first_port)
                p.kill9(p.workers[0])
                before = len(model.calls)
                model.arrived.clear()
                start_worker(p, model, second_port := free_port())
                await asyncio.wait_for(model.arrived.wait(), timeout=120)
                await wait_saturated(p, second_port)
                responses = await read_until(
                    p,
                    topics.RESPONSES,
                    ResponseDelivered,
                    one_answer_per_response(model, lows | highs),
                    timeout_s=240,
                )
    assert {r.request_id for r in responses} == lows | highs, "no request was lost"
    assert_highs_first(model.calls[before:])
