"""Configuration as events applied without a restart, and the guardian network's first
stages: failing verdicts become a diagnosis, a proposal and a safety review."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.config_values import apply_change, config_changed
from connectors.client import GuardianClient
from connectors.config_log import publish_config, read_config_history
from schemas import topics
from schemas.network_events import FailureDiagnosed, ImprovementProposed, ProposalReviewed
from schemas.request_events import ResponseDelivered, VerdictIssued
from streams.settings import AppSettings
from tests.integration.harness import pipeline, read_until
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
    assert [e.version for e in history] == [1]
    assert history[0].changed_keys == ("guardian.pass_threshold",)


async def test_failing_answers_lead_to_a_reviewed_proposal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    question, good = QA[0]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({f"j{i}": [{"answer": good}] for i in range(8)})
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_REFINE_MAX_ROUNDS="1",
            GUARDIAN_NETWORK_DIAGNOSIS_WINDOW_S="2",
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            for i in range(8):  # JSON asked for, prose given: a format failure each time
                await client.ask(f"[[script:j{i}]] {question}", answer_format="json")
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
