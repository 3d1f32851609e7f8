"""A model call that hangs longer than the session timeout costs the worker nothing:
it stays in its consumer group and other requests keep flowing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from connectors.client import GuardianClient
from connectors.kafka import KafkaSettings
from tests.integration.harness import pipeline
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration
HANG_S = 15.0  # the harness runs workers with a 6 s session timeout


def members(admin: AdminClient, group: str) -> tuple[str, frozenset[str]]:
    (description,) = admin.describe_consumer_groups([group]).values()
    result = description.result(timeout=30)
    return str(result.state), frozenset(m.member_id for m in result.members)


async def test_a_hanging_model_call_does_not_cost_the_group_membership(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[0]
    admin = AdminClient(KafkaSettings(bootstrap_servers=kafka_bootstrap).confluent())
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script(
            {"hang": [{"answer": good, "latency_ms": HANG_S * 1000}], "quick": [{"answer": good}]}
        )
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script))
        await wait_ready(p)
        group = f"{p.namespace}.guardian-cluster"
        before = members(admin, group)
        async with GuardianClient(p.kafka) as client:
            started = time.monotonic()
            hanging = asyncio.create_task(client.ask(f"[[script:hang]] {question}", timeout_s=90))
            quick = [
                await client.ask(f"[[script:quick]] {question}", timeout_s=30) for _ in range(5)
            ]
            quick_done = time.monotonic() - started
            slow = await hanging
            during_and_after = members(admin, group)
    assert before[0].endswith("STABLE"), before
    assert during_and_after == before, "no member left or joined: no rebalance"
    assert quick_done < HANG_S, "other requests did not wait for the hanging call"
    assert all(r.status == "passed" for r in quick)
    assert slow.status == "passed"
    assert slow.latency_ms >= HANG_S * 1000
