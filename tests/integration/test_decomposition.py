"""A complex request on a real broker: it fans out to several specialists in parallel,
each subtask is judged and refined on its own, and a guarded synthesis answers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agents.specialists import ROLES
from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import TaskAssigned, VerdictIssued
from tests.integration.harness import pipeline, read_until
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration

PROMPT = (
    "Explain how photosynthesis works in plants and why photosynthesis matters for the "
    "climate, then compare C3 and C4 photosynthesis in plants."
)
FACTS = "Photosynthesis in plants turns light, water and carbon dioxide into sugar and oxygen."
REASONING = (
    "Photosynthesis in plants captures light; photosynthesis matters for the climate "
    "because plants take carbon dioxide out of the air. C3 and C4 plants differ in how "
    "they fix carbon."
)
SYNTHESIS = (
    "Photosynthesis in plants turns light, water and carbon dioxide into sugar. It matters "
    "for the climate because plants remove carbon dioxide. C3 and C4 photosynthesis differ: "
    "C4 plants concentrate carbon dioxide first."
)


def _role(specialist: str) -> str:
    """A phrase of the specialist's system prompt the scripted model recognises it by."""
    return ROLES[specialist].split(".")[0]


@pytest.mark.timeout(300)
async def test_a_complex_request_fans_out_and_a_guarded_synthesis_answers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    script = tmp_path / "specialists.json"
    script.write_text(
        json.dumps(
            {
                "default": {"answer": "Hello there, how can I help you today?"},
                "when_system_contains": {
                    _role("retrieval"): {"answer": FACTS},
                    _role("reasoning"): {"answer": REASONING},
                    _role("qa"): {"answer": "No."},  # never passes: refined, then reported
                    _role("synthesis"): {"answer": SYNTHESIS},
                },
            }
        )
    )
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_scripted_worker(script, GUARDIAN_REFINE_MAX_ROUNDS="2")
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            response = await client.ask(PROMPT, timeout_s=120)
        rid = response.request_id
        tasks = [
            t
            for t in await read_until(p, topics.TASKS, TaskAssigned, lambda _: True, timeout_s=5)
            if t.request_id == rid
        ]
        verdicts = [
            v
            for v in await read_until(
                p, topics.VERDICTS, VerdictIssued, lambda _: True, timeout_s=5
            )
            if v.request_id == rid
        ]

    specialists = {t.subtask: t.specialist for t in tasks}
    assert set(specialists.values()) >= {"retrieval", "reasoning", "qa", "synthesis"}
    assert len({s for s, name in specialists.items() if name != "synthesis"}) >= 3
    # every subtask was judged on its own, and the synthesis too
    judged = {v.subtask for v in verdicts}
    assert judged == set(specialists)
    rounds = Counter(v.subtask for v in verdicts)
    assert rounds["pitfalls"] == 2, "the failing subtask was re-asked with its critique"
    second = next(t for t in tasks if t.subtask == "pitfalls" and t.round == 2)
    assert second.critique
    synthesis = [t for t in tasks if t.subtask == "synthesis"]
    assert synthesis, "the synthesis task was assigned"
    assert FACTS in synthesis[0].instruction
    assert "(no answer)" not in synthesis[0].instruction
    assert synthesis[0].occurred_at >= max(
        v.occurred_at for v in verdicts if v.subtask != "synthesis"
    )
    assert any(v.subtask == "synthesis" and v.passed for v in verdicts)

    assert response.status == "passed", response
    assert response.content == SYNTHESIS
    assert set(response.specialists) >= {"retrieval", "reasoning", "qa", "synthesis"}
    assert response.reason_code == "subtask_failed"
    assert "pitfalls (failed)" in (response.reason or "")
