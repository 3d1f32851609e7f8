"""The readable timeline lines of a decision trail."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.trail import REQUEST_SCOPED, describe
from schemas import topics
from schemas.request_events import ContextProvided, TaskAssigned, VerdictIssued

AT = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def task(**fields: object) -> TaskAssigned:
    base: dict[str, object] = {
        "event_id": "e",
        "request_id": "r",
        "occurred_at": AT,
        "task_id": "r/main/1",
        "round": 1,
        "specialist": "general",
        "deployment": "d1",
        "instruction": "x",
        "system_prompt": "y",
    }
    return TaskAssigned(**{**base, **fields})


def test_a_single_task_reads_as_its_round() -> None:
    assert describe(task()) == "12:00:00.250  TaskAssigned       round 1 -> general@d1"


def test_a_subtask_and_the_routing_show_on_its_first_task() -> None:
    line = describe(
        task(
            subtask="facts",
            specialist="retrieval",
            task_class="reasoning",
            complexity_level="complex",
        )
    )
    assert line.endswith("facts round 1 -> retrieval@d1 [reasoning, complex]")
    later = describe(
        task(subtask="facts", round=2, critique="too short", complexity_level="complex")
    )
    assert later.endswith("facts round 2 -> general@d1 critique='too short'")


def test_a_verdict_names_its_subtask() -> None:
    v = VerdictIssued(
        event_id="v",
        request_id="r",
        occurred_at=AT,
        task_id="r/ask-1/1",
        subtask="ask-1",
        round=1,
        answer_event_id="a",
        passed=True,
        score=0.9,
        threshold=0.7,
    )
    assert "ask-1 round 1 PASS score=0.90" in describe(v)


def test_the_context_a_session_request_got_is_on_its_trail() -> None:
    c = ContextProvided(
        event_id="c", request_id="r", occurred_at=AT, session_id="s1", turns=2, dropped=1
    )
    assert describe(c).endswith("session=s1 turns=2 dropped=1")
    assert topics.CONTEXTS in REQUEST_SCOPED
