"""The improvement loop end to end on the real broker: a known failure under prompt
version A is diagnosed, a proposal is approved, an experiment reaches significance,
the config is promoted, and the pass rate is higher afterwards. And its guard rails:
a safety-lowering proposal never applies; a worse variant is rolled back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.config_values import config_of
from agents.optimizer import FORMAT_SENTENCE
from connectors.client import GuardianClient
from connectors.config_log import read_config_history
from schemas import topics
from schemas.envelope import Event
from schemas.network_events import (
    AlertRaised,
    ConfigChanged,
    ExperimentConcluded,
    FailureDiagnosed,
    ImprovementProposed,
    ProposalReviewed,
    SpecialistHealth,
)
from schemas.request_events import FeedbackGiven
from tests.integration.harness import Pipeline, pipeline, read_until
from tests.integration.test_network import borderline_answer
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration
QUESTION, GOOD = QA[0]
JSON_ANSWER = json.dumps({"answer": GOOD})


async def ask_batches(p: Pipeline, n: int, **fields: Any) -> list[str]:
    async with GuardianClient(p.kafka) as client:
        responses = await asyncio.gather(*(client.ask(QUESTION, **fields) for _ in range(n)))
    return [r.status for r in responses]


async def until_concluded(p: Pipeline, **fields: Any) -> list[ExperimentConcluded]:
    deadline = time.monotonic() + 240
    found: list[ExperimentConcluded] = []
    while not found and time.monotonic() < deadline:
        await ask_batches(p, 20, **fields)
        found = await read_until(p, topics.EXPERIMENTS, ExperimentConcluded, bool, timeout_s=2)
    return found


async def promoted_history(p: Pipeline) -> list[ConfigChanged]:
    """The config history once it holds a promoted prompt: the experiment stage writes
    its conclusion and the promotion to different topics, in no guaranteed order."""
    changes = await read_until(
        p,
        topics.CONFIG,
        ConfigChanged,
        lambda found: any(FORMAT_SENTENCE in config_of(c).specialist.system_prompt for c in found),
        timeout_s=60,
    )
    return sorted(changes, key=lambda c: c.version)


def operator_proposal(key: str, current: str, proposed: str, kind: str) -> ImprovementProposed:
    pid = uuid.uuid4().hex
    return ImprovementProposed.model_validate(
        {
            "event_id": pid,
            "request_id": pid,
            "occurred_at": datetime.now(UTC),
            "proposal_id": pid,
            "kind": kind,
            "key": key,
            "current_value": current,
            "proposed_value": proposed,
            "proposed_by": "operator",
        }
    )


async def publish(p: Pipeline, event: Event) -> None:
    async with GuardianClient(p.kafka) as client:
        await client.send_to(topics.PROPOSALS, event)


@pytest.mark.timeout(600)
async def test_a_known_failure_is_diagnosed_fixed_tested_and_promoted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Under the first prompt the model answers JSON requests in prose; once the system
    # prompt asks for valid JSON only, it answers in JSON.
    script = {
        "default": {"answer": GOOD},
        "when_system_contains": {"valid JSON only": {"answer": JSON_ANSWER}},
    }
    with pipeline(kafka_bootstrap, tmp_path) as p:
        path = tmp_path / "prompt-sensitive.json"
        path.write_text(json.dumps(script))
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(path),
            GUARDIAN_REFINE_MAX_ROUNDS="1",
            GUARDIAN_NETWORK_DIAGNOSIS_WINDOW_S="2",
            GUARDIAN_NETWORK_EXPERIMENT_MIN_SAMPLES="10",
        )
        await wait_ready(p)
        before = await ask_batches(p, 10, answer_format="json")
        concluded = await until_concluded(p, answer_format="json")
        history = await promoted_history(p)
        after = await ask_batches(p, 10, answer_format="json")
        diagnoses = await read_until(p, topics.DIAGNOSES, FailureDiagnosed, bool, timeout_s=5)
        proposals = await read_until(p, topics.PROPOSALS, ImprovementProposed, bool, timeout_s=5)
        reviews = await read_until(p, topics.REVIEWS, ProposalReviewed, bool, timeout_s=5)
    diagnosis = next(d for d in diagnoses if d.failure_class == "format")
    proposal = next(x for x in proposals if x.diagnosis_id == diagnosis.diagnosis_id)
    review = next(r for r in reviews if r.proposal_id == proposal.proposal_id)
    (result,) = concluded
    assert proposal.key == "specialist.system_prompt"
    assert FORMAT_SENTENCE in json.loads(proposal.proposed_value)
    assert review.approved
    assert result.proposal_id == proposal.proposal_id
    assert result.decision == "promote"
    assert result.p_value_pass_rate < 0.05
    start, promote = history[-2], history[-1]
    assert "experiment.id" in start.changed_keys
    assert FORMAT_SENTENCE in config_of(promote).specialist.system_prompt
    assert config_of(promote).experiment.id == ""
    order = [diagnosis, proposal, review, start, result, promote]
    assert [e.occurred_at for e in order] == sorted(e.occurred_at for e in order)
    assert before.count("passed") == 0
    assert after.count("passed") == len(after), "the promoted prompt fixes the failure"


async def test_a_proposal_lowering_a_safety_threshold_is_rejected_and_never_applied(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted")
        await wait_ready(p)
        lower = operator_proposal("guardian.pass_threshold", "0.7", "0.45", "threshold")
        pii_off = operator_proposal("guardian.pii_check", "true", "false", "model")
        for proposal in (lower, pii_off):
            await publish(p, proposal)
        reviews = await read_until(
            p, topics.REVIEWS, ProposalReviewed, lambda rs: len(rs) >= 2, timeout_s=60
        )
        await ask_batches(p, 3)
        history = await read_config_history(p.kafka)
    by_id = {r.proposal_id: r for r in reviews}
    assert not by_id[lower.proposal_id].approved
    assert any("pass_threshold_floor" in reason for reason in by_id[lower.proposal_id].reasons)
    assert not by_id[pii_off.proposal_id].approved
    assert any("safety_checks_on" in reason for reason in by_id[pii_off.proposal_id].reasons)
    assert [e.version for e in history] == [0], "nothing unapproved reached the configuration"


@pytest.mark.timeout(600)
async def test_a_worse_variant_is_rolled_back_and_the_rollback_is_an_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Answers whose alignment sits just above 0.30: a stricter gate of 0.35 fails them.
    answer = borderline_answer(QUESTION, low=0.31, high=0.34)
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(
            answer,
            GUARDIAN_REFINE_MAX_ROUNDS="1",
            GUARDIAN_NETWORK_EXPERIMENT_MIN_SAMPLES="10",
        )
        await wait_ready(p)
        stricter = operator_proposal("guardian.min_alignment", "0.3", "0.35", "threshold")
        await publish(p, stricter)
        await read_until(p, topics.REVIEWS, ProposalReviewed, bool, timeout_s=60)
        concluded = await until_concluded(p)
        history = await read_config_history(p.kafka)
    (result,) = concluded
    assert result.decision == "rollback", result.reason
    assert result.treatment_passes < result.control_passes
    rollback = history[-1]
    assert rollback.changed_by == "experiments"
    assert "rollback" in rollback.reason
    assert config_of(rollback).guardian.min_alignment == pytest.approx(0.3)
    assert config_of(rollback).experiment.id == ""


async def test_a_five_percent_accuracy_drop_triggers_exactly_one_recommendation(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    window_s = 60.0
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_NETWORK_META_INTERVAL_S="0.5",
            GUARDIAN_NETWORK_DRIFT_WINDOW_S=str(window_s),
            GUARDIAN_NETWORK_DRIFT_MIN_SAMPLES="8",
            GUARDIAN_MODEL_HEALTH_INTERVAL_S="0.5",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            answered = await asyncio.gather(*(client.ask(QUESTION) for _ in range(20)))
            now = datetime.now(UTC)
            # Ratings given in the previous window were good, in this one poor.
            for i, r in enumerate(answered):
                earlier = i < 10
                at = now - timedelta(seconds=window_s * (1.5 if earlier else 0.2))
                await client.send_to(
                    topics.FEEDBACK,
                    FeedbackGiven(
                        event_id=uuid.uuid4().hex,
                        request_id=r.request_id,
                        occurred_at=at,
                        kind="explicit",
                        rating=0.9 if earlier else 0.1,
                    ),
                )
        first = await read_until(
            p,
            topics.ALERTS,
            AlertRaised,
            lambda found: any(a.rule == "retraining_recommended" for a in found),
            timeout_s=60,
        )
        # Ten more health events mean ten more evaluation ticks (both every 0.5 s).
        seen = len(
            await read_until(p, topics.SPECIALIST_HEALTH, SpecialistHealth, bool, timeout_s=5)
        )
        await read_until(
            p,
            topics.SPECIALIST_HEALTH,
            SpecialistHealth,
            lambda hs: len(hs) >= seen + 10,
            timeout_s=60,
        )
        alerts = await read_until(p, topics.ALERTS, AlertRaised, bool, timeout_s=5)
    assert any(a.rule == "retraining_recommended" for a in first)
    recommendations = [a for a in alerts if a.rule == "retraining_recommended"]
    assert len(recommendations) == 1, recommendations
    (rec,) = recommendations
    assert rec.subject == "accuracy.general"
    assert rec.value == pytest.approx(0.0)
    assert "retraining" in rec.message
