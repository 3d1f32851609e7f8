"""Weighted, health-aware load balancing across deployments: over 1,000 requests the
split follows the weights, and a deployment that is down receives none."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import TaskAssigned
from tests.integration.harness import covers, pipeline, read_until
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration
TOLERANCE = 0.04  # four percentage points: about 2.8 standard deviations at n = 1,000


@pytest.mark.timeout(600)
async def test_the_split_follows_the_weights_and_a_down_deployment_gets_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[0]
    ok, down = tmp_path / "ok.json", tmp_path / "down.json"
    ok.write_text(json.dumps({"default": {"answer": good}}))
    down.write_text(json.dumps({"default": {"error": "unavailable"}}))
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(
            GUARDIAN_MODEL_DEPLOYMENTS=f"a=scripted:{ok},b=scripted:{ok},c=scripted:{down}",
            GUARDIAN_ROUTING_WEIGHTS=json.dumps({"a": 0.6, "b": 0.3, "c": 0.1}),
            GUARDIAN_MODEL_RETRY_BASE_DELAY_S="0.01",
            GUARDIAN_MODEL_BREAKER_OPEN_S="600",
            GUARDIAN_GUARD_EMBEDDER="hashing",
            GUARDIAN_GUARD_PII_CHECK="false",
            GUARDIAN_REFINE_MAX_ROUNDS="1",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            # Until c's breaker opens, the tasks routed to c fail over to a.
            warm = [await client.ask(question) for _ in range(40)]
            sent = [await client.submit(question) for _ in range(1000)]
        ids = {s.request_id for s in sent}
        tasks = await read_until(p, topics.TASKS, TaskAssigned, covers(ids), timeout_s=240)
    assert all(r.status == "passed" for r in warm)
    assert any(t.deployment == "c" for t in tasks if t.request_id not in ids), (
        "c was routed to before its breaker opened"
    )
    # A task sent again (re-read after a rebalance, or re-sent while waiting) is the
    # same event: count each task once.
    firsts = {t.event_id: t for t in tasks if t.request_id in ids and t.round == 1}
    split = Counter(t.deployment for t in firsts.values())
    assert sum(split.values()) == 1000
    assert split["c"] == 0, "a deployment that is down receives no task"
    assert abs(split["a"] / 1000 - 0.6 / 0.9) <= TOLERANCE, split
    assert abs(split["b"] / 1000 - 0.3 / 0.9) <= TOLERANCE, split
    assert not any(t.degraded_route for t in tasks if t.request_id in ids)
