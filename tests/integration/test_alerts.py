"""An error rate over 10% raises exactly one alert per incident, on the topic and at a
webhook receiver, and one resolution when it clears."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.client import GuardianClient
from schemas import topics
from schemas.network_events import AlertRaised
from tests.integration.harness import pipeline, read_until
from tests.integration.test_pipeline import QA, wait_ready
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.integration
Hook = tuple[str, list[dict[str, Any]], asyncio.Event]


@pytest.fixture
async def webhook() -> AsyncIterator[Hook]:
    """A real HTTP receiver on loopback that keeps every alert POSTed to it and says
    when a resolution arrived."""
    received: list[dict[str, Any]] = []
    resolution = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        alert = await request.json()
        received.append(alert)
        if alert["state"] == "resolved":
            resolution.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with LoopbackServer(app) as server:
        yield f"{server.origin}/hook", received, resolution


async def test_an_error_rate_incident_fires_once_and_resolves_once(
    kafka_bootstrap: str, tmp_path: Path, webhook: Hook
) -> None:
    url, received, resolution = webhook
    question, good = QA[0]
    # One request in four fails its first call (then the retry answers): a 20% error
    # rate, above the 10% threshold and below what opens the breaker.
    flaky = {
        f"f{i}": [{"error": "unavailable"}, {"answer": good}] if i % 4 == 0 else [{"answer": good}]
        for i in range(24)
    }
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script(flaky)
        p.start_worker(
            GUARDIAN_MODEL_DEPLOYMENTS=f"flaky=scripted:{script}",
            GUARDIAN_MODEL_RETRY_BASE_DELAY_S="0.01",
            GUARDIAN_MODEL_BREAKER_WINDOW_S="3",
            GUARDIAN_MODEL_HEALTH_INTERVAL_S="0.5",
            GUARDIAN_ALERT_ERROR_RATE_WINDOW_S="3",
            GUARDIAN_ALERT_MIN_CALLS="5",
            GUARDIAN_ALERT_EVALUATE_INTERVAL_S="0.5",
            GUARDIAN_ALERT_WEBHOOK_URL=url,
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            await asyncio.gather(
                *(client.ask(f"[[script:{k}]] {question}", timeout_s=60) for k in flaky)
            )
        alerts = await read_until(
            p,
            topics.ALERTS,
            AlertRaised,
            lambda found: any(a.state == "resolved" for a in found),
            timeout_s=60,
        )
        await asyncio.wait_for(resolution.wait(), timeout=30)
    error_rate = [a for a in alerts if a.rule == "error_rate"]
    assert [a.state for a in error_rate] == ["firing", "resolved"], alerts
    firing, resolved = error_rate
    assert firing.subject == "flaky"
    assert firing.alert_id == resolved.alert_id
    assert firing.value > 0.10
    assert firing.threshold == pytest.approx(0.10)
    hooked = [(a["alert_id"], a["state"]) for a in received if a["rule"] == "error_rate"]
    assert hooked == [(firing.alert_id, "firing"), (firing.alert_id, "resolved")]
    assert json.dumps(received)  # the receiver got plain JSON
