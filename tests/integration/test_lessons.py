"""Cross-specialist learning on the real broker: a lesson learned from the general
specialist's failures raises the synthesis specialist's first-round pass rate on the
same scope (JSON answers).

The scripted model wraps its JSON in prose unless the system prompt holds the JSON
lesson. Phase one: simple JSON requests, answered by the general specialist, fail the
format check on round one and pass when asked again (the script's second answer for
each): five such pairs teach the lesson. It is proposed, approved and A/B tested.
Phase two: requests of three parts, whose final JSON answer is written by the synthesis
specialist, never taught anything: with the lesson (the treatment arm) it answers in
JSON at once, without it the prose-wrapped JSON fails. The experiment promotes the
lesson and the lesson's next version says it is kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from agents.lessons import LESSONS_KEY, lesson_text
from agents.router import route_request
from connectors.client import GuardianClient
from schemas import topics
from schemas.network_events import (
    ConfigChanged,
    ExperimentConcluded,
    ImprovementProposed,
    LessonLearned,
    ProposalReviewed,
)
from schemas.request_events import VerdictIssued
from tests.integration.harness import pipeline, read_until, run_cli
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration
PAIRS = 5
LESSON = lesson_text("json", "format") or ""
NETWORK = {
    "GUARDIAN_NETWORK_LESSON_MIN_PAIRS": str(PAIRS),
    "GUARDIAN_NETWORK_EXPERIMENT_MIN_SAMPLES": "10",
    "GUARDIAN_NETWORK_DIAGNOSIS_WINDOW_S": "3600",
}


def _json(n: int) -> str:
    return json.dumps(
        {
            "country": f"country {n}",
            "capital": f"Capitalia {n}",
            "note": "a busy port city with old harbours and a river",
        }
    )


SUMMARY = json.dumps(
    {
        "capital of the country": "The capital of the country is Capitalia, a busy port.",
        "capital of the land": "The capital of the land is Landia, a mountain town.",
        "capital of the state": "The capital of the state is Statia, a river city.",
    }
)


def _script() -> dict[str, Any]:
    entries = {
        f"p1-{n}": [
            {"answer": f"Here is the JSON you asked for: {_json(n)}"},
            {"answer": _json(n)},
        ]
        for n in range(PAIRS + 1)
    }
    return {
        "entries": entries,
        "when_system_contains": {
            "answer with the JSON object only": {"answer": SUMMARY},
            "You write the final answer from notes": {"answer": f"Sure! Here it is: {SUMMARY}"},
        },
        "default": {"answer": "The capital asked for is Capitalia, a busy port city."},
    }


def three_parts(n: int) -> str:
    prompt = (
        f"Name the capital of country {n}. Name the capital of land {n}. "
        f"Name the capital of state {n}."
    )
    assert [s.specialist for s in route_request(prompt).subtasks][-1] == "synthesis"
    return prompt


async def _phase_two(client: GuardianClient, sent: list[str]) -> None:
    """Three-part JSON requests, four a second, until cancelled."""
    while True:
        request = await client.submit(three_parts(len(sent)), answer_format="json")
        sent.append(request.request_id)
        await asyncio.sleep(0.25)


async def test_a_lesson_from_one_specialist_raises_another_specialists_first_round_pass_rate(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sent: list[str] = []
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_scripted_worker(_script(), **NETWORK)
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            for n in range(PAIRS + 1):
                prompt = f"[[script:p1-{n}]] What is the capital of country {n}?"
                await client.submit(prompt, answer_format="json")
            [learned] = await read_until(p, topics.LESSONS, LessonLearned, bool, timeout_s=120)
            loader = asyncio.create_task(_phase_two(client, sent))
            try:
                [result] = await read_until(
                    p, topics.EXPERIMENTS, ExperimentConcluded, bool, timeout_s=240
                )
                versions = await read_until(
                    p, topics.LESSONS, LessonLearned, lambda v: len(v) >= 2, timeout_s=60
                )
            finally:
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loader
        proposals = await read_until(p, topics.PROPOSALS, ImprovementProposed, bool, timeout_s=0)
        reviews = await read_until(p, topics.REVIEWS, ProposalReviewed, bool, timeout_s=0)
        history = await read_until(p, topics.CONFIG_HISTORY, ConfigChanged, bool, timeout_s=0)
        verdicts = await read_until(p, topics.VERDICTS, VerdictIssued, bool, timeout_s=0)
        listed = await run_cli(["lessons"], p.worker_env())

    assert (learned.scope, learned.failure_class, learned.text) == ("json", "format", LESSON)
    assert learned.learned_from == ("general",), "taught by the general specialist alone"
    [proposal] = [x for x in proposals if x.diagnosis_id == learned.lesson_id]
    assert (proposal.key, proposal.kind) == (LESSONS_KEY, "lesson")
    assert [r.approved for r in reviews if r.proposal_id == proposal.proposal_id] == [True]
    assert result.proposal_id == proposal.proposal_id

    first_synthesis = [
        v for v in verdicts if v.subtask == "synthesis" and v.round == 1 and v.variant
    ]
    with_lesson = [v.passed for v in first_synthesis if v.variant != "control"]
    without = [v.passed for v in first_synthesis if v.variant == "control"]
    assert with_lesson, "the treatment arm answered three-part requests"
    assert without, "the control arm answered three-part requests"
    assert sum(with_lesson) / len(with_lesson) > sum(without) / len(without) + 0.5, (
        f"synthesis first-round passes: {sum(with_lesson)}/{len(with_lesson)} with the "
        f"lesson, {sum(without)}/{len(without)} without"
    )
    assert not any(
        v.specialist == "synthesis"
        for v in verdicts
        if v.reasked_for and v.passed and v.occurred_at < learned.occurred_at
    ), "synthesis taught nothing"

    assert result.decision == "promote", result.reason
    promoted = [c for c in history if LESSONS_KEY in c.changed_keys]
    assert json.loads(promoted[-1].values[LESSONS_KEY]) == {"json": [LESSON]}
    kept = max(versions, key=lambda v: v.version)
    assert (kept.lesson_id, kept.version, kept.state) == (learned.lesson_id, 2, "kept")
    assert kept.experiment_id == result.experiment_id
    assert f"{learned.lesson_id[:12]} v2 kept" in listed
