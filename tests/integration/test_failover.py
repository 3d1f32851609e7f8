"""A primary deployment down for the whole run: the breaker opens and the fallback answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.client import GuardianClient
from schemas import topics
from schemas.network_events import SpecialistHealth
from schemas.request_events import SpecialistAnswered
from tests.integration.harness import by_request, covers, pipeline, read_until
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration


async def test_breaker_opens_and_the_fallback_answers_fast(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    down = tmp_path / "down.json"
    down.write_text(json.dumps({"default": {"error": "unavailable"}}))
    question, good = QA[2]
    up = tmp_path / "up.json"
    up.write_text(json.dumps({"default": {"answer": good}}))
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(
            GUARDIAN_MODEL_DEPLOYMENTS=f"primary=scripted:{down},backup=scripted:{up}",
            GUARDIAN_MODEL_RETRY_BASE_DELAY_S="0.01",
            GUARDIAN_MODEL_BREAKER_OPEN_S="300",
            GUARDIAN_WORKER_SPECIALIST_CONCURRENCY="1",
            GUARDIAN_MODEL_HEALTH_INTERVAL_S="0.5",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            sent = [await client.ask(question, timeout_s=60) for _ in range(12)]
        ids = {r.request_id for r in sent}
        answers = await read_until(p, topics.ANSWERS, SpecialistAnswered, covers(ids), timeout_s=30)
        health = await read_until(
            p,
            topics.SPECIALIST_HEALTH,
            SpecialistHealth,
            lambda found: any(h.deployment == "primary" and h.state == "down" for h in found),
            timeout_s=30,
        )
    assert all(r.status == "passed" and r.content == good for r in sent)
    mine = [a for rid, got in by_request(answers).items() if rid in ids for a in got]
    assert {a.deployment for a in mine} == {"backup"}, "every answer came from the fallback"
    open_breaker = [a for a in mine if a.attempts == 1]
    assert len(open_breaker) >= 10, "once open, the primary is not called at all"
    assert max(a.latency_ms for a in open_breaker) < 1000
    primary = [h for h in health if h.deployment == "primary"]
    assert primary, "the worker published the primary's health"
    assert primary[-1].state == "down"
    assert primary[-1].breaker == "open"
    assert primary[-1].last_success_at is None
    assert any(h.deployment == "backup" and h.state == "healthy" for h in health)
