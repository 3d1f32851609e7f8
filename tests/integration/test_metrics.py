"""The worker's Prometheus endpoint serves the families with values that match the traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.client import GuardianClient
from schemas import topics
from tests.integration.harness import pipeline
from tests.integration.test_pipeline import OFF_TOPIC, QA, wait_ready
from tests.loopback import free_port

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape_until(url: str, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``ready`` (counts are bumped right after the sends they count)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            found = samples((await http.get(url)).text)
            if ready(found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)  # polling an HTTP endpoint inside a deadline loop


def _settled(found: Samples) -> bool:
    rejected = found.get(("guardian_responses_total", (("status", "rejected"),)), 0)
    return rejected >= 1 and any(k[0] == "guardian_consumer_lag_messages" for k in found)


async def test_metrics_count_what_the_pipeline_did(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    question, good = QA[0]
    once = {f"m{i}": [{"answer": good}] for i in range(3)}
    twice = {f"n{i}": [{"answer": OFF_TOPIC}, {"answer": good}] for i in range(3)}
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script(once | twice)
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_WORKER_METRICS_PORT=str(port),
            GUARDIAN_WORKER_LAG_INTERVAL_S="0.5",
        )
        await wait_ready(p)  # one probe request: passes in one round
        async with GuardianClient(p.kafka) as client:
            keys = list(once) + list(twice)
            await asyncio.gather(*(client.ask(f"[[script:{k}]] {question}") for k in keys))
            await client.ask("", timeout_s=60)  # rejected
        found = await scrape_until(f"http://127.0.0.1:{port}/metrics", _settled)
        async with httpx.AsyncClient() as http:
            live = await http.get(f"http://127.0.0.1:{port}/healthz")
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
    # The worker answered requests: its loop turns, its tables are recovered.
    assert live.status_code == 200, live.text
    assert ready.status_code == 200, ready.text
    assert ready.json()["recovered"] is True
    assert found[("guardian_responses_total", (("status", "passed"),))] == 7
    assert found[("guardian_responses_total", (("status", "rejected"),))] == 1
    assert found[("guardian_refine_rounds_count", ())] == 7
    assert found[("guardian_refine_rounds_sum", ())] == 1 + 3 * 1 + 3 * 2
    assert found[("guardian_guardian_verdicts_total", (("outcome", "pass"),))] == 7
    assert found[("guardian_guardian_verdicts_total", (("outcome", "fail"),))] == 3
    assert (
        found[("guardian_specialist_model_calls_total", (("model", "scripted"), ("outcome", "ok")))]
        == 10
    )
    assert found[("guardian_stage_events_total", (("outcome", "ok"), ("stage", "intake")))] == 8
    assert (
        found[("guardian_specialist_tokens_total", (("kind", "completion"), ("model", "scripted")))]
        > 0
    )
    assert found[("guardian_end_to_end_seconds_count", ())] == 8
    lag = {k[1]: v for k, v in found.items() if k[0] == "guardian_consumer_lag_messages"}
    assert (("topic", p.topic(topics.REQUESTS)),) in lag, "lag is reported per consumed topic"
