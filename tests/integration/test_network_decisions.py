"""Whole-cluster decisions: the guardian network decides on the facts of every partition
in one place, so two workers (the aggregator moving between them as the second joins)
reach exactly the decisions one worker reaches on the same facts in the same order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from connectors import kafka_connect
from schemas import topics
from schemas.codec import Codec
from schemas.network_events import ExperimentConcluded, FailureDiagnosed, NetworkFactRecorded
from schemas.topics import NETWORK_SCOPE, app_id_for
from tests.integration.harness import Pipeline, pipeline, read_until
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration
WINDOW = timedelta(seconds=60)
# Event times a day ahead: the workers' own ticks (wall clock) stay behind them, so only
# the facts below move event time, in the order they are sent.
BASE = datetime.fromtimestamp(
    (datetime.now(UTC) + timedelta(days=1)).timestamp() // 60 * 60, tz=UTC
)


def fact(n: int, at: datetime, *, passed: bool, arm: str | None = None) -> NetworkFactRecorded:
    terms = (
        {
            "experiment_id": "exp-fixed",
            "proposal_id": "p-fixed",
            "min_samples": 10,
            "alpha": 0.05,
            "treatment_share": 0.5,
        }
        if arm
        else {}
    )
    return NetworkFactRecorded.model_validate(
        {
            "event_id": f"fact-{n}",
            "request_id": f"req-{n}",
            "occurred_at": at,
            "config_version": 0,
            "variant": "treatment:exp-fixed" if arm == "treatment" else arm,
            "fact": "verdict",
            "source_event_id": f"verdict-{n}",
            "recorded_at": at,
            "round": 1,
            "passed": passed,
            "score": 0.9 if passed else 0.3,
            "failure_classes": () if passed else ("format",),
            "specialist": "general",
            "model": "fixed",
            **terms,
        }
    )


def sample() -> list[NetworkFactRecorded]:
    """Eight format failures in one window; a 20-verdict experiment whose treatment always
    passes and control always fails; one verdict past the window and its lateness."""
    failures = [fact(i, BASE + timedelta(seconds=i), passed=False) for i in range(8)]
    arms = [
        fact(100 + i, BASE + timedelta(seconds=10 + i), passed=bool(i % 2), arm=arm)
        for i, arm in enumerate(["control", "treatment"] * 10)
    ]
    redelivered = [failures[3], arms[5]]
    closing = fact(999, BASE + WINDOW + timedelta(seconds=31), passed=True)
    return [*failures, *arms[:12], *redelivered, *arms[12:], closing]


async def send(p: Pipeline, facts: list[NetworkFactRecorded]) -> None:
    codec = Codec()
    producer = kafka_connect.producer(p.kafka, acks="all")
    await kafka_connect.start(producer, p.kafka)
    try:
        for f in facts:
            await producer.send_and_wait(
                p.topic(topics.NETWORK_FACTS), codec.encode(f), key=NETWORK_SCOPE.encode()
            )
    finally:
        await producer.stop()


def until_members(p: Pipeline, count: int, timeout_s: float = 60.0) -> None:
    """Wait until the workers' consumer group has ``count`` members."""
    admin = AdminClient(p.kafka.confluent())
    group = app_id_for(p.namespace)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = admin.describe_consumer_groups([group])[group].result(timeout=10)
        if len(found.members) >= count and found.state == ConsumerGroupState.STABLE:
            return
        time.sleep(0.5)
    raise AssertionError(f"the group never had {count} members")


async def decisions(
    bootstrap: str, tmp: Path, workers: int
) -> tuple[list[ExperimentConcluded], list[FailureDiagnosed]]:
    await asyncio.to_thread(tmp.mkdir)
    with pipeline(bootstrap, tmp) as p:
        env = {"GUARDIAN_NETWORK_DIAGNOSIS_WINDOW_S": str(WINDOW.total_seconds())}
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", **env)
        await wait_ready(p)
        facts = sample()
        await send(p, facts[:15])
        if workers == 2:  # a second worker joins mid-stream: the group rebalances
            p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", **env)
            await asyncio.to_thread(until_members, p, 2)
        await send(p, facts[15:])
        concluded = await read_until(p, topics.EXPERIMENTS, ExperimentConcluded, bool, timeout_s=60)
        diagnoses = await read_until(
            p,
            topics.DIAGNOSES,
            FailureDiagnosed,
            lambda ds: any(d.window_start == BASE for d in ds),
            timeout_s=60,
        )
    return concluded, [d for d in diagnoses if d.window_start == BASE]


@pytest.mark.timeout(180)
async def test_two_workers_reach_the_decisions_of_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    (one_concluded, one_diagnosed), (two_concluded, two_diagnosed) = await asyncio.gather(
        decisions(kafka_bootstrap, tmp_path / "one", 1),
        decisions(kafka_bootstrap, tmp_path / "two", 2),
    )
    (result,) = one_concluded
    assert result.decision == "promote", result.reason
    assert (result.control_n, result.treatment_n) == (10, 10), "each verdict counted once"
    assert (result.control_passes, result.treatment_passes) == (0, 10)
    (diagnosis,) = one_diagnosed
    # The eight failures and the control arm's ten; the treatment arm is the experiment's.
    assert (diagnosis.failure_class, diagnosis.failures, diagnosis.total) == ("format", 18, 18)
    assert two_concluded == one_concluded
    assert two_diagnosed == one_diagnosed
