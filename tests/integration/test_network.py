"""Configuration as events applied without a restart, and the guardian network's first
stages: failing verdicts become a diagnosis, a proposal and a safety review."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.config_values import apply_change, config_changed, config_of
from agents.guardian import judge, measure
from connectors.client import GuardianClient
from connectors.config_log import publish_config, read_config_history
from connectors.embeddings import HashingEmbedder
from schemas import topics
from schemas.network_events import (
    ConfigChanged,
    ExperimentConcluded,
    FailureDiagnosed,
    ImprovementProposed,
    ProposalReviewed,
)
from schemas.request_events import ResponseDelivered, SpecialistAnswered, VerdictIssued
from streams.settings import AppSettings
from tests.integration.harness import Pipeline, pipeline, read_until, until_logged
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration


async def test_a_config_change_applies_without_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[1]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({"default-answer": [{"answer": good}]})
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script))
        await wait_ready(p)
        # The worker records version 0 in the background once it starts; a change must
        # build on it.
        deadline = time.monotonic() + 60
        while not await read_config_history(p.kafka):
            assert time.monotonic() < deadline, "the worker never recorded version 0"
            await asyncio.sleep(0.2)  # polling the history topic inside a deadline loop
        settings = AppSettings(kafka=p.kafka)
        base = settings.pipeline_config()
        stricter = apply_change(base, "guardian.pass_threshold", "0.99")
        event = config_changed(
            base,
            stricter,
            changed_by="test",
            reason="stricter",
            now=datetime.now(UTC),
            event_id=uuid.uuid4().hex,
        )
        await publish_config(p.kafka, event)
        deadline = time.monotonic() + 60
        async with GuardianClient(p.kafka) as client:
            while True:
                r = await client.ask(f"[[script:default-answer]] {question}", timeout_s=60)
                if r.config_version == 1 or time.monotonic() > deadline:
                    break
        verdicts = await read_until(
            p,
            topics.VERDICTS,
            VerdictIssued,
            lambda vs: any(v.config_version == 1 for v in vs),
            timeout_s=30,
        )
        history = await read_config_history(p.kafka)
    assert r.config_version == 1, "a new request was decided under the new version"
    assert next(v.threshold for v in verdicts if v.config_version == 1) == pytest.approx(0.99)
    assert [e.version for e in history] == [0, 1], "version 0 is the worker's first start"
    assert history[1].changed_keys == ("guardian.pass_threshold",)


Reviewed = tuple[
    list[FailureDiagnosed],
    list[ImprovementProposed],
    list[ProposalReviewed],
    list[ResponseDelivered],
]


async def format_failures_reviewed(p: Pipeline, **env: str) -> Reviewed:
    """Eight answers in prose where JSON was asked for, in one diagnosis window: the
    network's diagnoses, proposals and reviews of them, and the responses."""
    question, good = QA[0]
    script = p.write_script({f"j{i}": [{"answer": good}] for i in range(8)})
    p.start_worker(
        GUARDIAN_MODEL_BACKEND="scripted",
        GUARDIAN_MODEL_SCRIPT_PATH=str(script),
        GUARDIAN_REFINE_MAX_ROUNDS="1",
        GUARDIAN_NETWORK_DIAGNOSIS_WINDOW_S="4",
        **env,
    )
    await wait_ready(p)
    # Windows are aligned to the epoch: the burst starts as one opens, so it fits in it.
    await asyncio.sleep(4 - time.time() % 4)
    async with GuardianClient(p.kafka) as client:
        # JSON asked for, prose given: a format failure each time.
        await asyncio.gather(
            *(client.ask(f"[[script:j{i}]] {question}", answer_format="json") for i in range(8))
        )
    diagnoses = await read_until(
        p,
        topics.DIAGNOSES,
        FailureDiagnosed,
        lambda ds: any(d.failure_class == "format" for d in ds),
        timeout_s=60,
    )
    proposals = await read_until(p, topics.PROPOSALS, ImprovementProposed, bool, timeout_s=60)
    reviews = await read_until(p, topics.REVIEWS, ProposalReviewed, bool, timeout_s=60)
    responses = await read_until(p, topics.RESPONSES, ResponseDelivered, bool, timeout_s=5)
    return diagnoses, proposals, reviews, responses


async def test_failing_answers_lead_to_a_reviewed_proposal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        diagnoses, proposals, reviews, responses = await format_failures_reviewed(p)
    (fmt,) = [d for d in diagnoses if d.failure_class == "format"]
    assert fmt.failures >= 5
    assert fmt.rate == pytest.approx(fmt.failures / fmt.total)
    assert set(fmt.example_request_ids) <= {r.request_id for r in responses}
    (proposal,) = [x for x in proposals if x.diagnosis_id == fmt.diagnosis_id]
    assert proposal.kind == "prompt"
    assert proposal.key == "specialist.system_prompt"
    assert "JSON" in proposal.proposed_value
    (decision,) = [x for x in reviews if x.proposal_id == proposal.proposal_id]
    assert decision.approved, decision.reasons


async def test_frozen_changes_are_reviewed_but_never_started(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        _, proposals, reviews, _ = await format_failures_reviewed(
            p, GUARDIAN_NETWORK_APPLY_CHANGES="false"
        )
        approved = [r for r in reviews if r.approved]
        assert approved, [r.reasons for r in reviews]
        # The experiment stage has taken the approval in, and started nothing.
        await until_logged(p, "the experiment queue waits", timeout_s=30)
        history = await read_config_history(p.kafka)
    assert {p.key for p in proposals} >= {"specialist.system_prompt"}
    assert [c.version for c in history] == [0], [c.reason for c in history]


def borderline_answer(question: str, low: float = 0.26, high: float = 0.29) -> str:
    """An on-the-edge answer: its cosine to the question (hashing embedder) lies within
    ``[low, high]`` (by default between min_alignment gates of 0.25 and 0.30), so the
    threshold alone decides it."""
    embedder = HashingEmbedder()
    shared = ["water", "boiling", "point", "sea", "level"]
    filler = [
        "bananas",
        "grow",
        "in",
        "warm",
        "tropical",
        "regions",
        "and",
        "taste",
        "sweet",
        "when",
        "ripe",
    ]
    for k in range(1, len(shared) + 1):
        for m in range(6, len(filler) + 1):
            answer = " ".join(shared[:k] + filler[:m]) + "."
            a, b = embedder.embed([question, answer])
            if low <= sum(x * y for x, y in zip(a, b, strict=True)) <= high:
                return answer
    raise AssertionError("no borderline answer among the candidates")


@pytest.mark.timeout(600)
async def test_an_approved_proposal_runs_as_an_experiment_and_is_promoted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question = QA[0][0]
    answer = borderline_answer(question)
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(
            answer,
            GUARDIAN_REFINE_MAX_ROUNDS="1",
            GUARDIAN_NETWORK_EXPERIMENT_MIN_SAMPLES="10",
        )
        await wait_ready(p)
        proposal = ImprovementProposed(
            event_id=uuid.uuid4().hex,
            request_id="op-1",
            occurred_at=datetime.now(UTC),
            proposal_id="op-1",
            kind="threshold",
            key="guardian.min_alignment",
            current_value="0.3",
            proposed_value="0.25",
            proposed_by="operator",
        )
        async with GuardianClient(p.kafka) as client:
            await client.send_to(topics.PROPOSALS, proposal)
            started = await read_until(
                p,
                topics.CONFIG,
                ConfigChanged,
                lambda cs: any(c.values.get("experiment.id", '""') != '""' for c in cs),
                timeout_s=60,
            )
            experiment_id = json.loads(started[-1].values["experiment.id"])
            deadline = time.monotonic() + 180
            concluded: list[ExperimentConcluded] = []
            while not concluded and time.monotonic() < deadline:
                await asyncio.gather(*(client.ask(question, timeout_s=60) for _ in range(20)))
                concluded = await read_until(
                    p, topics.EXPERIMENTS, ExperimentConcluded, bool, timeout_s=2
                )
        history = await read_config_history(p.kafka)
        verdicts = await read_until(p, topics.VERDICTS, VerdictIssued, bool, timeout_s=5)
    (result,) = concluded
    assert result.experiment_id == experiment_id
    assert result.decision == "promote", result.reason
    assert result.p_value_pass_rate < 0.05
    assert result.treatment_passes > result.control_passes
    arms = {v.variant for v in verdicts if v.variant}
    assert arms == {"control", f"treatment:{experiment_id}"}
    assert [e.changed_by for e in history] == ["worker", "experiments", "experiments"]
    promoted = config_of(history[-1])
    assert promoted.guardian.min_alignment == pytest.approx(0.25)
    assert promoted.experiment.id == ""


def barely_passing_answer(question: str) -> str:
    """An answer the live guardians pass with a score just above 0.70 (picked by running
    the real scoring on candidates), so a 0.75 threshold would fail it."""
    policy = AppSettings().pipeline_config().guardian
    embedder = HashingEmbedder()
    shared = ["water", "boiling", "point", "sea", "level", "is"]
    filler = ["bananas", "grow", "in", "warm", "regions", "daily", "too"]
    for k in range(1, len(shared) + 1):
        for m in range(0, len(filler) + 1):
            text = " ".join(shared[:k] + filler[:m]) + "."
            answer = SpecialistAnswered(
                event_id="x",
                request_id="x",
                occurred_at=datetime.now(UTC),
                task_id="x",
                round=1,
                specialist="general",
                deployment="d",
                model="m",
                instruction=question,
                status="ok",
                content=text,
            )
            verdict = judge(answer, measure(answer, embedder, None), policy)
            if verdict.passed and verdict.score < 0.745:
                return text
    raise AssertionError("no barely passing answer among the candidates")


async def test_unhappy_users_make_the_meta_guardian_propose_a_stricter_threshold(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question = QA[0][0]
    answer = barely_passing_answer(question)
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(
            answer,
            GUARDIAN_NETWORK_META_INTERVAL_S="0.5",
            GUARDIAN_NETWORK_META_MIN_RATED="10",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            answered = await asyncio.gather(*(client.ask(question) for _ in range(12)))
            for r in answered:
                await client.feedback(r.request_id, rating=0.1, comment="not helpful")
        proposals = await read_until(
            p,
            topics.PROPOSALS,
            ImprovementProposed,
            lambda ps: any(x.proposed_by == "meta-guardian" for x in ps),
            timeout_s=60,
        )
    assert all(r.status == "passed" for r in answered)
    (meta,) = [x for x in proposals if x.proposed_by == "meta-guardian"]
    assert meta.kind == "threshold"
    assert meta.key == "guardian.pass_threshold"
    assert float(meta.proposed_value) > float(meta.current_value)
