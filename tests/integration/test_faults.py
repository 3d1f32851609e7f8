"""Faults on a real broker: a task delivered again is answered from the answer store
without a model call; a broker frozen (SIGSTOP) for 60 s under load leaves every worker
running and every request answered once it is back."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.client import GuardianClient
from schemas import topics
from schemas.codec import Codec
from schemas.request_events import ResponseDelivered, SpecialistAnswered, TaskAssigned
from tests.fake_model_service import FakeModelService, completion
from tests.integration.harness import covers, pipeline, read_until
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration


def _task(request_id: str) -> TaskAssigned:
    return TaskAssigned(
        event_id=f"task-{request_id}",
        request_id=request_id,
        occurred_at=datetime.now(UTC),
        task_id=f"{request_id}/main/1",
        round=1,
        specialist="general",
        deployment="openai",
        instruction=QA[1][0],
        system_prompt="Answer briefly.",
    )


@pytest.mark.timeout(300)
async def test_a_task_delivered_again_is_answered_without_a_model_call(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with FakeModelService(replace(completion(QA[1][1]), delay_s=0.2)) as model:
        with pipeline(kafka_bootstrap, tmp_path, partitions=3) as p:
            p.start_served_worker(model.base_url)
            await wait_ready(p)
            before = model.calls
            task = _task("redelivered-task")
            codec = Codec()
            async with GuardianClient(p.kafka) as client:
                producer = client._producer
                assert producer is not None
                for _ in range(2):  # the same task event twice, as a redelivery brings it
                    await producer.send_and_wait(
                        p.topic(topics.TASKS), codec.encode(task), key=task.request_id.encode()
                    )
            answers = await read_until(
                p,
                topics.ANSWERS,
                SpecialistAnswered,
                lambda found: sum(a.task_id == task.task_id for a in found) >= 2,
                timeout_s=120,
            )
    mine = [a for a in answers if a.task_id == task.task_id]
    assert len(mine) == 2
    assert mine[0] == mine[1], "the copy re-emits the very same answer event"
    assert model.calls - before == 1, "one model call for the task and its copy"


@pytest.mark.timeout(600)
async def test_a_broker_stopped_for_a_minute_under_load_leaves_workers_running(
    private_broker: BrokerSettings, tmp_path: Path
) -> None:
    broker.start(private_broker)
    bootstrap = broker.bootstrap(private_broker)
    pid = broker.status(private_broker).pid
    assert pid is not None
    async with FakeModelService(replace(completion(QA[1][1]), delay_s=0.2)) as model:
        with pipeline(bootstrap, tmp_path, partitions=3) as p:
            workers = [p.start_served_worker(model.base_url) for _ in range(2)]
            await wait_ready(p, timeout_s=240)
            async with GuardianClient(p.kafka) as client:
                sent = [await client.submit(QA[1][0]) for _ in range(40)]
                os.kill(pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(60)  # the fault itself: the broker frozen a minute
                finally:
                    os.kill(pid, signal.SIGCONT)
                sent += [await client.submit(QA[1][0]) for _ in range(40)]
            ids = {s.request_id for s in sent}
            responses = await read_until(
                p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=300
            )
            alive = [w.poll() is None for w in workers]
    assert {r.request_id for r in responses} >= ids, "every request answered"
    assert alive == [True, True], "no worker exited while the broker was away"
