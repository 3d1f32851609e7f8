"""Audits that hold across config changes, on a real broker with a live worker: a window
spanning a threshold change, an intake limit that turns accepts into rejects, an
experiment started and promoted verifies with no divergence; one tampered verdict,
response and config version are each named."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents import experiment_plan
from agents.config import PipelineConfig
from agents.config_history import genesis
from agents.config_values import apply_change, config_changed, config_of
from agents.replay import verify
from connectors.client import GuardianClient
from connectors.config_log import publish_change, read_config_versions
from connectors.replay_log import Window, read_window
from schemas import topics
from schemas.network_events import ExperimentConcluded, ImprovementProposed
from schemas.request_events import ResponseDelivered, VerdictIssued
from streams.cli_replay import EXIT_OK, add_replay_commands, run_replay
from streams.settings import AppSettings
from tests.integration.harness import Pipeline, covers, pipeline, read_until, until_logged
from tests.integration.test_pipeline import QA, wait_ready

pytestmark = pytest.mark.integration

Change = Callable[[PipelineConfig], PipelineConfig]
LONG = "Explain in a few words why the sky looks blue on a clear day at noon, please."
SHORT = QA[0][0]


async def publish(p: Pipeline, change: Change, reason: str) -> int:
    """Publish ``change`` of the latest version as the next; wait until the worker runs it."""

    def derive(latest: Any) -> Any:
        previous = config_of(latest)
        return config_changed(
            previous,
            change(previous),
            changed_by="audit-test",
            reason=reason,
            now=datetime.now(UTC),
            event_id=uuid.uuid4().hex,
        )

    first = genesis(
        AppSettings().pipeline_config(),
        now=datetime.now(UTC),
        event_id=uuid.uuid4().hex,
        changed_by="audit-test",
    )
    event = await publish_change(p.kafka, derive, first)
    assert event is not None
    await until_logged(p, f"config version {event.version} applied", timeout_s=60)
    return event.version


async def ask_all(p: Pipeline, prompts: list[str]) -> set[str]:
    async with GuardianClient(p.kafka) as client:
        sent = [await client.submit(prompt) for prompt in prompts]
    ids = {s.request_id for s in sent}
    await read_until(p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=120)
    return ids


def experiment_on(key: str, value: str) -> Change:
    proposal = ImprovementProposed(
        event_id="p-1", request_id="proposals", occurred_at=datetime.now(UTC),
        proposal_id="p-1", kind="threshold", key=key, current_value="", proposed_value=value,
    )  # fmt: skip
    return lambda config: experiment_plan.start(config, proposal, "exp-1", share=0.5)


def promoted(config: PipelineConfig) -> PipelineConfig:
    result = ExperimentConcluded(
        event_id="c-1", request_id="experiments", occurred_at=datetime.now(UTC),
        experiment_id="exp-1", proposal_id="p-1", control_n=1, control_passes=0,
        treatment_n=1, treatment_passes=1, control_mean_score=0.5, treatment_mean_score=0.6,
        effect_size=0.1, p_value_pass_rate=0.01, p_value_scores=0.01, decision="promote",
    )  # fmt: skip
    return experiment_plan.finish(config, result)


def args(since: datetime, until: datetime, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_commands(parser.add_subparsers())
    return parser.parse_args(
        ["replay", "--since", since.isoformat(), "--until", until.isoformat(), *extra]
    )


@pytest.mark.timeout(600)
async def test_verify_holds_across_config_changes_and_names_tampering(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_fixed_answer_worker(QA[0][1])
        await wait_ready(p)
        since = datetime.now(UTC)
        ids = await ask_all(p, [SHORT, LONG] * 3)
        await publish(p, lambda c: apply_change(c, "guardian.pass_threshold", "0.97"), "strict")
        ids |= await ask_all(p, [SHORT, LONG] * 3)
        limit = await publish(
            p, lambda c: apply_change(c, "intake.max_prompt_chars", "60"), "short prompts"
        )
        ids |= await ask_all(p, [SHORT, LONG] * 3)
        await publish(p, experiment_on("guardian.pass_threshold", "0.3"), "experiment")
        ids |= await ask_all(p, [SHORT] * 12)
        promotion = await publish(p, promoted, "promote")
        ids |= await ask_all(p, [SHORT] * 4)
        until = datetime.now(UTC) + timedelta(seconds=1)
        settings = AppSettings(kafka=p.kafka)
        code = await asyncio.to_thread(run_replay, args(since, until, "--verify"), settings)
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        read = await read_window(p.kafka, Window(since, until, timedelta(minutes=5)))
        history = await read_config_versions(p.kafka)

    assert code == EXIT_OK, summary
    assert (summary["divergences"], summary["requests"]) == (0, len(ids))
    responses = {
        e.request_id: e
        for events in read.by_request.values()
        for e in events
        if isinstance(e, ResponseDelivered) and e.request_id in ids
    }
    statuses = {(r.config_version, r.status) for r in responses.values()}
    assert (limit, "rejected") in statuses, "the limit turned accepts into rejects"
    assert any(r.variant for r in responses.values()), "some requests ran in an arm"
    assert promotion in {r.config_version for r in responses.values()}

    configs = {v: config_of(e) for v, e in history.items()}
    by_request = {rid: read.by_request[rid] for rid in ids}
    passed = next(rid for rid, r in responses.items() if r.status == "passed" and r.rounds == 1)
    flipped = [
        e.model_copy(update={"passed": False}) if isinstance(e, VerdictIssued) else e
        for e in by_request[passed]
    ]
    assert {d.request_id for d in verify({passed: flipped}, configs)} == {passed}
    answered = next(rid for rid, r in responses.items() if r.status != "rejected")
    edited = [
        e.model_copy(update={"content": "edited"}) if isinstance(e, ResponseDelivered) else e
        for e in by_request[answered]
    ]
    assert "content" in {d.field for d in verify({answered: edited}, configs)}
    strict = configs[limit].intake.model_copy(update={"max_prompt_chars": 10_000})
    tampered = configs | {limit: configs[limit].model_copy(update={"intake": strict})}
    named = {d.request_id for d in verify(by_request, tampered)}
    rejected = {rid for rid, r in responses.items() if r.status == "rejected"}
    assert rejected
    assert rejected <= named, "a tampered config version shows in the requests it decided"
