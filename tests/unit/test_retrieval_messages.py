"""Retrieved passages in the model's messages and on the specialist's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agents.errors import ModelUnavailable
from agents.ports import Completion
from agents.prompts import build_messages, refinement_request, render_passages
from agents.specialist import answered
from schemas.codec import Codec
from schemas.request_events import Passage, SpecialistAnswered, TaskAssigned

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
INSTRUCTION = "List the facts needed.\n\nRequest: What is a partition?"
PASSAGES = (
    Passage(
        source="kafka.md#2", text="## Topics and partitions\nA partition is a log.", score=0.71
    ),
    Passage(source="kafka.md#3", text="## Offsets\nAn offset is a position.", score=0.42),
)


def task(**fields: Any) -> TaskAssigned:
    base: dict[str, Any] = {
        "event_id": "t-1",
        "request_id": "req-1",
        "occurred_at": T0,
        "task_id": "req-1/facts/1",
        "subtask": "facts",
        "round": 1,
        "specialist": "retrieval",
        "deployment": "local",
        "instruction": INSTRUCTION,
        "system_prompt": "You gather facts.",
    }
    return TaskAssigned(**{**base, **fields})


def test_the_sources_are_numbered_best_first_with_their_origin() -> None:
    lines = render_passages(PASSAGES).splitlines()
    assert "cite them by number" in lines[0]
    assert lines[1:] == [
        "[1] (kafka.md#2) ## Topics and partitions",
        "A partition is a log.",
        "[2] (kafka.md#3) ## Offsets",
        "An offset is a position.",
    ]


def test_the_sources_come_after_the_context_and_before_the_instruction() -> None:
    messages = build_messages(task(context=("We talked about Kafka.",)), PASSAGES)
    assert [m.role for m in messages] == ["system", "user", "user", "user"]
    assert messages[1].content == "Context: We talked about Kafka."
    assert messages[2].content == render_passages(PASSAGES)
    assert messages[3].content == INSTRUCTION


def test_a_refinement_round_keeps_the_sources_before_the_instruction() -> None:
    refine = task(round=2, critique="Too vague.", previous_attempt="Logs.")
    messages = build_messages(refine, PASSAGES)
    assert [(m.role, m.content) for m in messages[1:]] == [
        ("user", render_passages(PASSAGES)),
        ("user", INSTRUCTION),
        ("assistant", "Logs."),
        ("user", refinement_request("Too vague.")),
    ]


def test_without_passages_the_messages_have_no_sources() -> None:
    assert build_messages(task(), ()) == build_messages(task())
    assert [m.content for m in build_messages(task())] == ["You gather facts.", INSTRUCTION]


def _answer(outcome: Completion | ModelUnavailable, **kw: Any) -> SpecialistAnswered:
    return answered(
        task(),
        outcome,
        deployment="local",
        latency_ms=12.0,
        attempts=1,
        now=T0 + timedelta(seconds=1),
        **kw,
    )


def test_an_answer_carries_the_passages_it_was_given() -> None:
    event = _answer(Completion(content="A partition is a log [1].", model="m"), passages=PASSAGES)
    assert event.status == "ok"
    assert event.passages == PASSAGES
    assert Codec().decode(Codec().encode(event), SpecialistAnswered) == event


def test_a_failed_call_still_records_the_passages_it_would_have_shown() -> None:
    event = _answer(ModelUnavailable("down"), passages=list(PASSAGES))
    assert (event.status, event.passages) == ("failed", PASSAGES)


def test_an_answer_without_retrieval_has_no_passages() -> None:
    assert _answer(Completion(content="x", model="m")).passages == ()
