"""Bounded refinement state on a real broker: finished requests leave the table as
tombstones while resends are still answered from their done markers, open requests
survive a kill -9, the indexes follow a rebalance without scanning the table, and
provisioning migrates the configs of existing topics."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from connectors import kafka_connect
from connectors.admin import ensure_topics
from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import ResponseDelivered, SpecialistAnswered, TaskAssigned
from schemas.topics import DONE_TABLE, REFINEMENT_TABLE, TableSpec, app_id_for
from tests.integration.harness import Pipeline, covers, pipeline, read_until
from tests.loopback import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

QUESTION = "What does a Kafka consumer group do?"
ANSWER = (
    "A Kafka consumer group lets several consumers share the partitions of a topic, "
    "so each record is processed by one member of the group."
)
ENTRIES = "guardian_refine_table_entries"
PARSED = "guardian_refine_index_parsed_entries_total"
OPEN = "guardian_refine_open_requests"


async def changelog(p: Pipeline, spec: TableSpec) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) record of a table's changelog, up to its end offsets now."""
    name = spec.changelog(app_id_for(p.namespace))
    consumer = kafka_connect.consumer(p.kafka)
    await kafka_connect.start(consumer, p.kafka)
    try:
        parts = [TopicPartition(name, i) for i in range(p.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: list[tuple[bytes, bytes | None]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            found += [(r.key, r.value) for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def wait_for_tombstone(p: Pipeline, spec: TableSpec, key: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (key, None) in await changelog(p, spec):
            return
        await asyncio.sleep(0.2)  # polling the changelog inside a deadline loop
    pytest.fail(f"no tombstone for {key!r} in the {spec.name} changelog within {timeout_s}s")


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of a worker's Prometheus endpoint (empty until it serves)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    except OSError:
        return {}
    samples = (line.split() for line in text.splitlines() if line and line[0] != "#")
    return {parts[0]: float(parts[1]) for parts in samples if len(parts) == 2}


async def wait_metrics(ports: list[int], ok: object, timeout_s: float) -> list[dict[str, float]]:
    """Scrape the workers until ``ok(samples)`` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    seen: list[dict[str, float]] = []
    while time.monotonic() < deadline:
        seen = [await asyncio.to_thread(scrape, port) for port in ports]
        if all(seen) and ok(seen):  # type: ignore[operator]
            return seen
        await asyncio.sleep(0.2)  # polling the metrics inside a deadline loop
    pytest.fail(f"metrics never settled: {seen}")


async def test_a_finished_request_is_tombstoned_and_a_resend_is_still_deduplicated(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(
            ANSWER, GUARDIAN_REFINE_RETAIN_S="1", GUARDIAN_WORKER_DEADLINE_SCAN_S="0.2"
        )
        async with GuardianClient(p.kafka) as client:
            first = await client.ask(QUESTION, timeout_s=60)
        rid = first.request_id
        await wait_for_tombstone(p, REFINEMENT_TABLE, rid.encode(), timeout_s=20)
        async with GuardianClient(p.kafka) as client:
            await client.submit(QUESTION, request_id=rid)
            await client.submit("Something else entirely.", request_id=rid)
        responses = await read_until(
            p,
            topics.RESPONSES,
            ResponseDelivered,
            lambda rs: sum(r.request_id == rid for r in rs) >= 3,
            timeout_s=20,
        )
        answers = await read_until(p, topics.ANSWERS, SpecialistAnswered, bool, timeout_s=0)
        markers = await changelog(p, DONE_TABLE)
    mine = [r for r in responses if r.request_id == rid and r.is_final]
    assert len(mine) == 2, "the resend gets the same answer"
    conflicts = [r for r in responses if r.request_id == rid and not r.is_final]
    assert [r.reason_code for r in conflicts] == ["conflict"], "the conflicting one its own"
    assert mine[0] == mine[1] == first, "the very same response, by event id and content"
    assert sum(a.request_id == rid for a in answers) == 1, "no second model call"
    assert any(key == rid.encode() and value for key, value in markers)


async def test_open_requests_finish_after_a_kill_minus_nine(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    n = 4
    ports = [free_port(), free_port()]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script(
            {f"k{i}": [{"answer": ANSWER, "latency_ms": 4000}] for i in range(n)}
        )
        env = {
            "GUARDIAN_MODEL_BACKEND": "scripted",
            "GUARDIAN_MODEL_SCRIPT_PATH": str(script),
            "GUARDIAN_GUARD_EMBEDDER": "hashing",
            "GUARDIAN_GUARD_PII_CHECK": "false",
            "GUARDIAN_WORKER_STALL_S": "3",
            "GUARDIAN_WORKER_DEADLINE_SCAN_S": "0.2",
        }
        first = p.start_worker(GUARDIAN_WORKER_METRICS_PORT=str(ports[0]), **env)
        async with GuardianClient(p.kafka) as client:
            await client.ask("[[script:probe]] Say hello.", timeout_s=60)
            sent = [await client.submit(f"[[script:k{i}]] {QUESTION}") for i in range(n)]
        ids = {s.request_id for s in sent}
        await read_until(p, topics.TASKS, TaskAssigned, covers(ids), timeout_s=20)
        p.kill9(first)
        p.start_worker(GUARDIAN_WORKER_METRICS_PORT=str(ports[1]), **env)
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=60
        )
        (after,) = await wait_metrics(ports[1:], lambda s: s[0].get(OPEN) == 0, timeout_s=10)
    assert {r.request_id for r in responses} >= ids
    assert all(r.status == "passed" for r in responses if r.request_id in ids)
    assert after[PARSED] >= n, "the open requests were read back from the changelog"


async def test_the_indexes_follow_a_rebalance_without_scanning_the_table(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    env = {"GUARDIAN_WORKER_DEADLINE_SCAN_S": "0.05"}
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(ANSWER, GUARDIAN_WORKER_METRICS_PORT=str(ports[0]), **env)
        async with GuardianClient(p.kafka) as client:
            done = [await client.ask(f"{QUESTION} ({i})", timeout_s=60) for i in range(9)]
        total = len(done)

        def entries(want: int) -> object:
            return lambda s: sum(w.get(ENTRIES, 0) for w in s) == want

        (alone,) = await wait_metrics(ports[:1], entries(total), timeout_s=10)
        assert alone[PARSED] == 0, "writes index what they write; nothing is parsed"
        p.start_fixed_answer_worker(ANSWER, GUARDIAN_WORKER_METRICS_PORT=str(ports[1]), **env)

        def split(s: list[dict[str, float]]) -> bool:
            return entries(total)(s) and all(w.get(ENTRIES, 0) > 0 for w in s)  # type: ignore[operator]

        settled = await wait_metrics(ports, split, timeout_s=40)
        async with GuardianClient(p.kafka) as client:
            more = [await client.ask(f"{QUESTION} (more {i})", timeout_s=30) for i in range(3)]

        def finished(s: list[dict[str, float]]) -> bool:
            return entries(total + len(more))(s) and all(w.get(OPEN) == 0 for w in s)  # type: ignore[operator]

        final = await wait_metrics(ports, finished, timeout_s=10)
    assert all(r.status == "passed" for r in done + more)
    assert [w[PARSED] for w in final] == [w[PARSED] for w in settled], (
        "serving and many timer ticks later, nothing more was parsed"
    )
    assert sum(w[PARSED] for w in settled) <= total, "only recovered entries were parsed"


async def test_provisioning_brings_existing_changelogs_and_topics_up_to_date(
    kafka_bootstrap: str, tmp_path: Path, kafka_admin: Any
) -> None:
    p = Pipeline(bootstrap=kafka_bootstrap, tmp=tmp_path)
    old = REFINEMENT_TABLE.changelog(app_id_for(p.namespace))
    requests = p.topic(topics.REQUESTS)
    made = kafka_admin.create_topics(
        [
            NewTopic(old, num_partitions=p.partitions, config={"cleanup.policy": "compact"}),
            NewTopic(requests, num_partitions=p.partitions, config={"retention.ms": "1000"}),
        ]
    )
    for future in made.values():
        future.result(timeout=30)
    # Created is not yet listed: provisioning updates the topics the cluster lists.
    deadline = time.monotonic() + 30
    while not {old, requests} <= set(kafka_admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "the new topics were never listed"
        await asyncio.sleep(0.1)  # polling the cluster's metadata inside a deadline loop
    assert ensure_topics(p.kafka, [topics.REQUESTS], partitions=p.partitions) == []
    configs = {}
    for name in (old, requests):
        resource = ConfigResource("topic", name)
        found = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
        configs[name] = {k: e.value for k, e in found.items()}
    assert {k: configs[old][k] for k in REFINEMENT_TABLE.config()} == REFINEMENT_TABLE.config()
    assert configs[requests]["retention.ms"] == str(topics.REQUESTS.retention_ms)
    kafka_admin.delete_topics([old, requests])
