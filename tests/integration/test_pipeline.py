"""The request path end to end on a real broker, with worker processes and a scripted model."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from connectors import kafka_connect
from connectors.admin import ensure_topics
from connectors.client import GuardianClient
from connectors.kafka import partition_for
from connectors.topic_reader import read_partitions
from schemas import topics
from schemas.codec import Codec
from schemas.request_events import (
    DeadLettered,
    RequestSubmitted,
    ResponseDelivered,
    TaskAssigned,
)
from schemas.topics import TopicSpec
from tests.integration.harness import (
    Pipeline,
    answered_without_gaps,
    by_request,
    covers,
    pipeline,
    read_until,
)

pytestmark = pytest.mark.integration

QA = [
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius, or 212 degrees Fahrenheit, at sea level.",
    ),
    (
        "Who wrote the play Romeo and Juliet?",
        "Romeo and Juliet was written by William Shakespeare in the 1590s.",
    ),
    (
        "How many planets are in the solar system?",
        "There are eight planets in the solar system, from Mercury out to Neptune.",
    ),
    (
        "What does a Kafka consumer group do?",
        "A consumer group lets several consumers share the partitions of a topic so each "
        "record is processed by one member.",
    ),
]
OFF_TOPIC = "Bananas are a popular fruit grown in tropical regions around the world."


async def wait_ready(p: Pipeline, timeout_s: float = 120.0) -> None:
    """A worker is ready when it answers a probe end to end."""
    async with GuardianClient(p.kafka) as client:
        probe = await client.ask("[[script:probe]] Say hello.", timeout_s=timeout_s)
    assert probe.status in {"passed", "failed"}


def plan(i: int) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Request i's category: the model's answers per round and what must come out."""
    question, good = QA[i % len(QA)]
    kind = i % 4
    if kind == 0:
        return question, [{"answer": good}], {"status": "passed", "rounds": 1, "content": good}
    if kind == 1:
        steps = [{"answer": OFF_TOPIC}, {"answer": good}]
        return question, steps, {"status": "passed", "rounds": 2, "content": good}
    if kind == 2:
        steps = [{"answer": OFF_TOPIC}, {"answer": OFF_TOPIC}, {"answer": good}]
        return question, steps, {"status": "passed", "rounds": 3, "content": good}
    # Never passes: JSON is required and never given. Round 1 is on topic (the best
    # attempt), later rounds are off topic: the response must carry round 1.
    steps = [{"answer": good}, {"answer": OFF_TOPIC}, {"answer": OFF_TOPIC}]
    expect = {"status": "failed", "rounds": 3, "content": good, "best_round": 1}
    return question, steps, expect | {"answer_format": "json"}


async def test_two_hundred_requests_get_exactly_one_final_answer_each(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    n = 200
    plans = {f"r{i}": plan(i) for i in range(n)}
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({key: steps for key, (_, steps, _) in plans.items()})
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script))
        await wait_ready(p)
        ids: dict[str, str] = {}
        async with GuardianClient(p.kafka) as client:
            for key, (question, _, expect) in plans.items():
                fmt = expect.get("answer_format", "text")
                sent = await client.submit(f"[[script:{key}]] {question}", answer_format=fmt)
                ids[sent.request_id] = key
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers(set(ids)), timeout_s=240
        )
        letters = await read_until(p, topics.DEAD_LETTERS, DeadLettered, bool, timeout_s=0)
    mine = [r for r in responses if r.request_id in ids]
    assert len(mine) == n
    assert Counter(r.request_id for r in mine).most_common(1)[0][1] == 1
    for r in mine:
        expect = plans[ids[r.request_id]][2]
        assert r.status == expect["status"], (ids[r.request_id], r)
        assert r.rounds == expect["rounds"], (ids[r.request_id], r)
        assert r.content == expect["content"], (ids[r.request_id], r)
        assert r.best_round == expect.get("best_round", expect["rounds"])
        assert 0.0 < r.confidence <= 1.0
        assert r.models == ("scripted",)
        assert r.completion_tokens > 0
    assert letters == []


async def test_bad_input_ends_as_dead_letter_or_rejection_and_good_requests_finish(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    codec = Codec()
    with pipeline(kafka_bootstrap, tmp_path) as p:
        # The good requests get real answers; anything else, the scripted model's echo.
        script = p.write_script({f"g{i}": [{"answer": QA[i % 4][1]}] for i in range(20)})
        worker = p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_REFINE_MAX_PROMPT_CHARS="200",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            await client.send_raw(b"junk", uuid.uuid4().bytes * 3)
            valid = RequestSubmitted(
                event_id="e", request_id="trunc", occurred_at=datetime.now(UTC), prompt="Hi there"
            )
            await client.send_raw(b"trunc", codec.encode(valid)[:-3])
            empty = await client.submit("   \n\t ")
            huge = await client.submit("Why? " * 100)
            expired = await client.submit(
                "What time is it?", deadline_at=datetime.now(UTC) - timedelta(seconds=5)
            )
            bad_priority = await client.submit("Hello there, how are you?", priority=42)
            first = await client.submit("What is the boiling point of water at sea level?")
            resend = await client.submit(
                "Something else entirely, please.", request_id=first.request_id
            )
            good = [await client.submit(f"[[script:g{i}]] {QA[i % 4][0]}") for i in range(20)]
        expected_rejections = {
            empty.request_id: "empty_prompt",
            huge.request_id: "prompt_too_long",
            expired.request_id: "deadline_expired",
            bad_priority.request_id: "priority_out_of_range",
        }
        want = {*expected_rejections, first.request_id, *(g.request_id for g in good)}
        responses = await read_until(
            p,
            topics.RESPONSES,
            ResponseDelivered,
            lambda found: covers(want)(found) and any(not r.is_final for r in found),
            timeout_s=120,
        )
        letters = await read_until(
            p, topics.DEAD_LETTERS, DeadLettered, lambda found: len(found) >= 2, timeout_s=60
        )
        assert worker.poll() is None, p.log()
    final = {rid: rs for rid, rs in by_request(responses).items() if rid in want}
    assert set(final) == want
    for rid, code in expected_rejections.items():
        (response,) = final[rid]
        assert response.status == "rejected"
        assert response.reason_code == code
        assert response.reason
    (kept,) = final[first.request_id]
    assert kept.content == "echo: What is the boiling point of water at sea level?"
    assert all(final[g.request_id][0].status == "passed" for g in good)
    reasons = Counter(letter.reason_code for letter in letters)
    assert reasons == Counter({"bad_magic": 1, "truncated": 1}), "a conflict is answered instead"
    (conflict,) = [r for r in responses if not r.is_final]
    assert conflict.request_id == first.request_id
    assert conflict.submission_id == resend.event_id
    assert (conflict.status, conflict.reason_code) == ("rejected", "conflict")
    assert conflict.reason


async def test_a_conflicting_resend_is_answered_on_its_own_while_the_original_keeps_its_answer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[0]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        # The original is still being answered when its conflicting resend comes in.
        script = p.write_script({"slow": [{"answer": good, "latency_ms": 1500}]})
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script))
        await wait_ready(p)
        rid = uuid.uuid4().hex
        async with GuardianClient(p.kafka) as client:
            original = asyncio.create_task(
                client.ask(f"[[script:slow]] {question}", request_id=rid, timeout_s=120)
            )
            await read_until(p, topics.REQUESTS, RequestSubmitted, covers({rid}), timeout_s=30)
            resend = asyncio.create_task(
                client.ask("Something else entirely, please.", request_id=rid, timeout_s=120)
            )
            rejection, answer = await resend, await original
            assert client.pending == 0
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers({rid}), timeout_s=30
        )
        letters = await read_until(p, topics.DEAD_LETTERS, DeadLettered, bool, timeout_s=0)
    assert (rejection.status, rejection.reason_code) == ("rejected", "conflict")
    assert rejection.request_id == rid
    assert rejection.submission_id is not None
    assert rejection.reason
    assert (answer.status, answer.content, answer.submission_id) == ("passed", good, None)
    assert {r.event_id for r in responses if r.request_id == rid} == {
        rejection.event_id,
        answer.event_id,
    }
    assert by_request(responses)[rid] == [answer], "one final answer for the request"
    assert [letter for letter in letters if letter.request_id == rid] == []


@pytest.mark.timeout(600)
async def test_kill_minus_nine_mid_run_loses_nothing_and_never_answers_twice_differently(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    n = 60
    steps = [
        {"answer": OFF_TOPIC, "latency_ms": 250},
        {"answer": QA[0][1], "latency_ms": 250},
    ]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({f"k{i}": steps for i in range(n)})
        env = {
            "GUARDIAN_MODEL_BACKEND": "scripted",
            "GUARDIAN_MODEL_SCRIPT_PATH": str(script),
            # A slow machine must not turn the crash test into a deadline test.
            "GUARDIAN_REFINE_DEFAULT_TIMEOUT_S": "900",
            # A task lost between the crash and the redelivery is assigned again.
            "GUARDIAN_WORKER_STALL_S": "15",
        }
        first = p.start_worker(**env)
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            sent = [await client.submit(f"[[script:k{i}]] {QA[0][0]}") for i in range(n)]
        ids = {s.request_id for s in sent}
        early = await read_until(
            p,
            topics.RESPONSES,
            ResponseDelivered,
            lambda found: len({r.request_id for r in found} & ids) >= 10,
            timeout_s=120,
        )
        assert len({r.request_id for r in early} & ids) < n, "the run ended before the kill"
        p.kill9(first)
        p.start_worker(**env)
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=240
        )
        tasks = await read_until(p, topics.TASKS, TaskAssigned, bool, timeout_s=0)
    answers, rounds_by_request = answered_without_gaps(ids, responses, tasks)
    for rid, rs in answers.items():
        distinct = {(r.status, r.content, r.rounds, r.confidence) for r in rs}
        assert len(distinct) == 1, f"{rid} was answered differently: {distinct}"
        assert rs[0].status in {"passed", "failed"}, rs[0]
        assert rs[0].rounds == max(rounds_by_request[rid])


@pytest.mark.timeout(600)
async def test_the_embedded_model_answers_through_the_pipeline(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(GUARDIAN_MODEL_BACKEND="embedded", GUARDIAN_REFINE_MAX_TOKENS="48")
        await wait_ready(p, timeout_s=240)
        async with GuardianClient(p.kafka) as client:
            questions = ["What is the capital of France?", "Name a primary colour."]
            results = await asyncio.gather(*(client.ask(q, timeout_s=240) for q in questions))
    for r in results:
        assert r.status in {"passed", "failed"}
        assert r.content.strip()
        assert r.models == ("smollm2-135m-instruct",)
        assert r.prompt_tokens > 0
        assert r.completion_tokens > 0
        assert 1 <= r.rounds <= 3


async def test_an_overdue_request_is_finalized_with_its_best_attempt(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[1]
    # Round 1 is on topic but not JSON (fails, best so far); round 2 never comes back
    # before the deadline.
    steps: list[dict[str, Any]] = [{"answer": good}, {"answer": good, "latency_ms": 60_000}]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({"late": steps})
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_WORKER_DEADLINE_SCAN_S="0.2",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            response = await client.ask(
                f"[[script:late]] {question}",
                answer_format="json",
                deadline_at=datetime.now(UTC) + timedelta(seconds=4),
                timeout_s=60,
            )
    assert response.status == "timeout"
    assert response.content == good
    assert response.best_round == 1
    assert response.rounds == 1
    assert response.reason_code == "deadline"
    assert 3_000 <= response.latency_ms < 30_000


async def test_topic_provisioning_is_idempotent_and_applies_the_specs(
    kafka_bootstrap: str, tmp_path: Path, kafka_admin: Any
) -> None:
    from confluent_kafka.admin._config import ConfigResource

    with pipeline(kafka_bootstrap, tmp_path) as p:
        assert ensure_topics(p.kafka, topics.ALL, partitions=p.partitions) == []
        meta = kafka_admin.list_topics(timeout=30).topics
        assert len(meta[p.topic(topics.REQUESTS)].partitions) == p.partitions
        assert len(meta[p.topic(topics.CONFIG)].partitions) == topics.CONFIG.partitions
        resource = ConfigResource("topic", p.topic(topics.CONFIG))
        configs = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
        assert configs["cleanup.policy"].value == "compact"


async def test_a_task_without_a_verdict_is_assigned_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A task waiting for its verdict is re-sent, as the same event, well before its
    request's deadline. A copy that reaches the worker whose model call for it is still
    running waits for that call instead of calling the model again; the call's own
    timeout then ends it, and the next round answers."""
    question, good = QA[2]
    steps: list[dict[str, Any]] = [{"answer": good, "latency_ms": 30_000}, {"answer": good}]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({"stuck": steps})
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_WORKER_STALL_S="2",
            GUARDIAN_WORKER_DEADLINE_SCAN_S="0.2",
            GUARDIAN_WORKER_MODEL_TIMEOUT_S="8",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            response = await client.ask(f"[[script:stuck]] {question}", timeout_s=25)
        tasks = await read_until(
            p,
            topics.TASKS,
            TaskAssigned,
            lambda ts: sum(t.request_id == response.request_id for t in ts) >= 3,
            timeout_s=10,
        )
    first_round = [t for t in tasks if t.request_id == response.request_id and t.round == 1]
    assert len(first_round) >= 2, "the waiting task was sent again"
    assert len({t.event_id for t in first_round}) == 1, "the copy is the same event"
    assert response.status == "passed"
    assert response.rounds == 2, "the stuck call timed out; the next round answered"
    assert response.latency_ms < 30_000, "not held for the stuck call's full 30 s"


async def test_a_request_on_another_partition_is_moved_home_and_answered_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A producer with another partitioner (or an explicit partition) puts a request
    where its request id's other events do not live: intake moves it to its home
    partition, acknowledged before the original's offset is committed, and answers it
    there once."""
    question, good = QA[1]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({"moved": [{"answer": good}]})
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script))
        await wait_ready(p)
        request = RequestSubmitted(
            event_id=uuid.uuid4().hex,
            request_id=uuid.uuid4().hex,
            occurred_at=datetime.now(tz=UTC),
            prompt=f"[[script:moved]] {question}",
        )
        home = partition_for(request.request_id.encode(), 3)
        producer = kafka_connect.producer(p.kafka)
        await kafka_connect.start(producer, p.kafka)
        try:
            await producer.send_and_wait(
                p.topic(topics.REQUESTS),
                key=request.request_id.encode(),
                value=Codec().encode(request),
                partition=(home + 1) % 3,
            )
        finally:
            await kafka_connect.stop(producer)
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers({request.request_id}), timeout_s=60
        )
        copies = [
            partition
            for partition, value in await records_of(p, topics.REQUESTS)
            if value == Codec().encode(request)
        ]
    assert sorted(copies) == sorted([home, (home + 1) % 3]), "moved as it was, once"
    [answer] = by_request(responses)[request.request_id]
    assert (answer.status, answer.content) == ("passed", good)


async def records_of(p: Pipeline, spec: TopicSpec) -> list[tuple[int, bytes]]:
    """Every record of ``spec`` now, as (partition, value)."""
    parts = [TopicPartition(p.topic(spec), i) for i in range(3)]
    return [(r.partition, r.value) for r in await read_partitions(p.kafka, parts)]
