"""Two workers rebalancing partitions mid-stream: a second worker joins under load and
the first leaves; nothing is lost and no request is answered twice differently."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import ResponseDelivered, TaskAssigned
from tests.integration.harness import answered_without_gaps, covers, pipeline, read_until
from tests.integration.test_pipeline import OFF_TOPIC, QA, wait_ready

pytestmark = pytest.mark.integration


def answered(ids: set[str], at_least: int):  # type: ignore[no-untyped-def]
    return lambda found: len({r.request_id for r in found} & ids) >= at_least


@pytest.mark.timeout(600)
async def test_two_workers_rebalancing_mid_stream_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    n = 90
    steps = [
        {"answer": OFF_TOPIC, "latency_ms": 150},
        {"answer": QA[1][1], "latency_ms": 150},
    ]
    with pipeline(kafka_bootstrap, tmp_path, partitions=6) as p:
        script = p.write_script({f"k{i}": steps for i in range(n)})
        env = {
            "GUARDIAN_MODEL_BACKEND": "scripted",
            "GUARDIAN_MODEL_SCRIPT_PATH": str(script),
            "GUARDIAN_REFINE_DEFAULT_TIMEOUT_S": "900",
        }
        first = p.start_worker(**env)
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            sent = [await client.submit(f"[[script:k{i}]] {QA[1][0]}") for i in range(n)]
        ids = {s.request_id for s in sent}
        await read_until(p, topics.RESPONSES, ResponseDelivered, answered(ids, 10), timeout_s=120)
        p.start_worker(**env)  # joins: partitions move while requests are in flight
        early = await read_until(
            p, topics.RESPONSES, ResponseDelivered, answered(ids, 40), timeout_s=180
        )
        assert len({r.request_id for r in early} & ids) < n, "the run ended before the moves"
        os.killpg(first.pid, signal.SIGTERM)  # leaves: its partitions move to the second
        assert first.wait(timeout=60) == 0, p.log(0)[-3000:]
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=240
        )
        tasks = await read_until(p, topics.TASKS, TaskAssigned, bool, timeout_s=0)
        assert p.workers[1].poll() is None, "the second worker is still running"
    answers, _ = answered_without_gaps(ids, responses, tasks)
    for rid, rs in answers.items():
        assert len({(r.event_id, r.content, r.status) for r in rs}) == 1, f"{rid}: {rs}"
        assert rs[0].status == "passed", rs[0]
    for index in (0, 1):
        assert "Traceback" not in p.log(index), p.log(index)[-3000:]
