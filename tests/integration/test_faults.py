"""Faults on a real broker: a task delivered again is answered from the answer store
without a model call; a verdict delivered again after its request's answer was sent
sends nothing; a send that fails is retried by the stage, not dead-lettered; a
broker frozen (SIGSTOP) for 60 s under load leaves every worker running and every
request answered once it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from connectors import broker
from connectors.admin import ensure_topics
from connectors.broker import BrokerSettings
from connectors.client import GuardianClient
from connectors.kafka import partition_for
from schemas import topics
from schemas.codec import Codec
from schemas.request_events import (
    DeadLettered,
    ResponseDelivered,
    SpecialistAnswered,
    TaskAssigned,
    VerdictIssued,
)
from tests.fake_model_service import FakeModelService, completion
from tests.integration.harness import Pipeline, by_request, covers, pipeline, read_until
from tests.integration.test_metrics import samples
from tests.integration.test_pipeline import QA, wait_ready
from tests.loopback import free_port

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


def same_partition_id(request_id: str, partitions: int) -> str:
    """A fresh request id whose records share a partition with ``request_id``'s."""
    home = partition_for(request_id.encode(), partitions)
    while partition_for((candidate := uuid.uuid4().hex).encode(), partitions) != home:
        pass
    return candidate


@pytest.mark.timeout(300)
async def test_a_verdict_delivered_again_after_the_answer_was_sent_sends_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with FakeModelService(completion(QA[1][1])) as model:
        with pipeline(kafka_bootstrap, tmp_path, partitions=3) as p:
            p.start_served_worker(model.base_url)
            await wait_ready(p)
            async with GuardianClient(p.kafka) as client:
                answer = await client.ask(QA[1][0], timeout_s=120)
                rid = answer.request_id
                verdicts = await read_until(
                    p, topics.VERDICTS, VerdictIssued, covers({rid}), timeout_s=60
                )
                producer = client._producer
                assert producer is not None
                for verdict in by_request(verdicts)[rid]:
                    await producer.send_and_wait(
                        p.topic(topics.VERDICTS), Codec().encode(verdict), key=rid.encode()
                    )
                # A later request on the same partitions: once it is answered, the
                # refine stage has handled the copies sent before its verdict.
                later = await client.ask(
                    QA[1][0], request_id=same_partition_id(rid, 3), timeout_s=120
                )
            responses = await read_until(
                p,
                topics.RESPONSES,
                ResponseDelivered,
                covers({rid, later.request_id}),
                timeout_s=30,
            )
    assert later.status == "passed"
    assert by_request(responses)[rid] == [answer], "no second response"


def retries(port: int) -> float:
    """The worker's ``guardian_stage_retries_total``, all stages."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        found = samples(page.read().decode())
    return sum(v for (name, _), v in found.items() if name == "guardian_stage_retries_total")


def delete_topic(p: Pipeline, spec: topics.TopicSpec) -> None:
    admin = AdminClient(p.kafka.confluent())
    for future in admin.delete_topics([p.topic(spec)], operation_timeout=30).values():
        future.result(timeout=30)


@pytest.mark.timeout(300)
async def test_a_send_that_fails_is_retried_not_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The responses topic is gone (the broker creates no topic on its own), so every
    send of a response fails once the producer's 2 s wait for the topic runs out: a
    retriable error. The refine stage handles its record again with backoff until the
    topic is back, and the request gets its one answer; nothing is dead-lettered."""
    metrics_port = free_port()
    async with FakeModelService(completion(QA[1][1])) as model:
        with pipeline(kafka_bootstrap, tmp_path, partitions=3) as p:
            p.start_served_worker(
                model.base_url,
                GUARDIAN_WORKER_PRODUCER_TIMEOUT_S="2",
                GUARDIAN_WORKER_METRICS_PORT=str(metrics_port),
            )
            await wait_ready(p)
            delete_topic(p, topics.RESPONSES)
            async with GuardianClient(p.kafka) as client:
                sent = await client.submit(QA[1][0])
            deadline = time.monotonic() + 120
            while await asyncio.to_thread(retries, metrics_port) < 2:
                assert time.monotonic() < deadline, p.log()[-3000:]
                await asyncio.sleep(0.5)  # polling the metrics endpoint inside a deadline
            ensure_topics(p.kafka, [topics.RESPONSES], partitions=3)
            responses = await read_until(
                p, topics.RESPONSES, ResponseDelivered, covers({sent.request_id}), timeout_s=120
            )
            letters = await read_until(p, topics.DEAD_LETTERS, DeadLettered, bool, timeout_s=0)
    [answer] = by_request(responses)[sent.request_id]
    assert (answer.status, answer.content) == ("passed", QA[1][1])
    assert letters == [], "a failed send is not a bad record"


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
