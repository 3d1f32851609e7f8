"""Prompt building: the chat messages a specialist sends for a task."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.prompts import (
    banned_characters_of,
    build_messages,
    decoded_as_json,
    json_schema_of,
    refinement_request,
    sampling_seed,
)
from schemas.request_events import Constraint, TaskAssigned

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SYSTEM = "You are a careful assistant."
QUESTION = "How do I bake bread at home?"


def task(**fields: Any) -> TaskAssigned:
    base: dict[str, Any] = {
        "event_id": "t-1",
        "request_id": "req-1",
        "occurred_at": T0,
        "task_id": "req-1/main/1",
        "round": 1,
        "specialist": "general",
        "deployment": "smollm2-cpu",
        "instruction": QUESTION,
        "system_prompt": SYSTEM,
    }
    return TaskAssigned(**{**base, **fields})


def roles(fields: dict[str, Any]) -> list[str]:
    return [m.role for m in build_messages(task(**fields))]


def test_a_plain_task_is_the_system_prompt_then_the_question() -> None:
    messages = build_messages(task())
    assert [(m.role, m.content) for m in messages] == [("system", SYSTEM), ("user", QUESTION)]


@pytest.mark.parametrize(
    ("answer_format", "rule"),
    [
        ("json", "Answer with one valid JSON value and nothing else."),
        ("markdown", "Format the answer as Markdown."),
    ],
)
def test_the_format_rule_is_appended_to_the_system_prompt(answer_format: str, rule: str) -> None:
    system = build_messages(task(answer_format=answer_format))[0]
    assert system.role == "system"
    assert system.content == f"{SYSTEM}\n{rule}"


@pytest.mark.parametrize("answer_format", ["text", "xml"])
def test_text_and_unknown_formats_add_no_rule(answer_format: str) -> None:
    assert build_messages(task(answer_format=answer_format))[0].content == SYSTEM


def test_context_turns_come_before_the_question() -> None:
    messages = build_messages(task(context=("We are at sea level.", "The oven is electric.")))
    assert [(m.role, m.content) for m in messages[1:]] == [
        ("user", "Context: We are at sea level."),
        ("user", "Context: The oven is electric."),
        ("user", QUESTION),
    ]


def test_a_critique_of_a_previous_attempt_ends_the_conversation() -> None:
    refine = task(
        round=2,
        context=("The oven is electric.",),
        critique="The answer is too short; give a complete answer.",
        previous_attempt="Bake it.",
    )
    messages = build_messages(refine)
    assert [m.role for m in messages] == ["system", "user", "user", "assistant", "user"]
    assert messages[2].content == QUESTION
    assert messages[-2].content == "Bake it."
    assert "The answer is too short; give a complete answer." in messages[-1].content
    assert messages[-1].content == refinement_request(refine.critique or "")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="first-round"),
        pytest.param({"previous_attempt": "Bake it."}, id="previous-without-critique"),
        pytest.param({"previous_attempt": "Bake it.", "critique": ""}, id="empty-critique"),
    ],
)
def test_without_a_critique_and_a_previous_attempt_there_is_no_assistant_turn(
    fields: dict[str, Any],
) -> None:
    assert roles(fields) == ["system", "user"]
    assert build_messages(task(**fields))[-1].content == QUESTION


def test_a_critique_without_a_previous_attempt_still_reaches_the_model() -> None:
    messages = build_messages(task(critique="Answer the question."))
    assert [m.role for m in messages] == ["system", "user", "user"]
    assert messages[1].content == QUESTION
    assert "Answer the question." in messages[-1].content


def test_the_refinement_request_quotes_the_critique() -> None:
    text = refinement_request("Remove personal data (EMAIL_ADDRESS) from the answer.")
    assert "Remove personal data (EMAIL_ADDRESS) from the answer." in text
    assert "improved answer to the original question" in text


def test_a_re_ask_under_constrained_decoding_ends_on_the_question() -> None:
    critique = "The answer is not valid JSON (Expecting value); answer with valid JSON only."
    messages = build_messages(
        task(
            round=2,
            answer_format="json",
            output_constraint="json",
            critique=critique,
            previous_attempt="Madrid and Rome.",
        )
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1].content == f"{critique}\n\n{QUESTION}"
    assert messages[-1].content.endswith(QUESTION)


def test_a_declared_schema_constrains_a_json_answer_only() -> None:
    schema = '{"type": "object"}'
    declared = (Constraint(kind="words", count=5), Constraint(kind="json", json_schema=schema))
    assert json_schema_of(task(answer_format="json", constraints=declared)) == schema
    assert json_schema_of(task(answer_format="text", constraints=declared)) is None
    assert json_schema_of(task(answer_format="json", constraints=declared[:1])) is None


def test_decoding_rules_out_the_characters_an_answer_s_constraints_forbid() -> None:
    stated = "Describe Paris in all lowercase letters, without commas."
    assert banned_characters_of(task(instruction=stated)) == "," + string.ascii_uppercase
    declared = (Constraint(kind="no_commas"),)
    assert banned_characters_of(task(constraints=declared)) == ","
    assert banned_characters_of(task()) == ""
    # The notes of a decomposed request are not the answer the constraints bound.
    assert banned_characters_of(task(instruction=stated, subtask="facts")) == ""
    # Decoded as JSON, the JSON grammar applies instead.
    assert banned_characters_of(task(instruction=stated, output_constraint="json")) == ""


def test_json_asked_for_in_the_question_is_decoded_as_json_from_the_first_round() -> None:
    stated = "Give three facts about the Nile as JSON."
    assert decoded_as_json(task(instruction=stated))
    assert decoded_as_json(task(constraints=(Constraint(kind="json"),)))
    assert decoded_as_json(task(output_constraint="json"))
    assert not decoded_as_json(task())
    assert not decoded_as_json(task(instruction="How do I parse dates in JSON?"))
    assert not decoded_as_json(task(instruction=stated, subtask="facts"))


def test_a_fresh_re_ask_decoded_as_json_ends_on_the_question() -> None:
    stated = "Give three facts about the Nile as JSON."
    note = "The answer must be valid JSON: answer with valid JSON only."
    as_json = build_messages(task(instruction=stated, round=2, critique=note))
    assert [(m.role, m.content) for m in as_json[1:]] == [
        ("user", f"Note: {note}"),
        ("user", stated),
    ]
    plain = build_messages(task(round=2, critique="Name the oven temperature."))
    assert plain[-1].content == "Note: Name the oven temperature."


def test_the_json_probe_measures_the_layouts_the_pipeline_sends() -> None:
    from streams.eval import json_probe

    def sent(**fields: Any) -> list[tuple[str, str]]:
        reask = task(
            **{
                "round": 2,
                "instruction": json_probe.QUESTION,
                "system_prompt": json_probe.SYSTEM.split("\n")[0],
                "answer_format": "json",
                "critique": json_probe.CRITIQUE,
                "previous_attempt": json_probe.PREVIOUS,
                **fields,
            }
        )
        return [(m.role, m.content) for m in build_messages(reask)]

    probed = {k: [(m.role, m.content) for m in v] for k, v in json_probe.layouts().items()}
    # Decoded as JSON, after a format failure or because the question asks for JSON, a
    # re-ask ends on the question.
    assert probed["question-last"] == sent(output_constraint="json") == sent()
    # The layout of a re-ask not decoded as JSON, which the probe measures against it.
    plain = sent(instruction="Give the capital cities of Spain and Italy.", answer_format="text")
    assert [role for role, _ in probed["critique-last"]] == [role for role, _ in plain]
    assert probed["critique-last"][-1] == plain[-1]
    assert json_probe.judged('{"Spain": "Madrid"}') == (True, True)
    assert json_probe.judged('{"type": "error"}') == (True, False)
    assert json_probe.judged("Madrid, Spain") == (False, True)


def test_the_same_messages_at_the_same_round_sample_with_the_same_seed() -> None:
    first_round = build_messages(task())
    seed = sampling_seed(first_round, 1)
    assert sampling_seed(build_messages(task(task_id="other-request/main/1")), 1) == seed
    assert 0 <= seed < 2**31
    assert sampling_seed(first_round, 2) != seed  # resampling draws afresh
    reworded = build_messages(task(instruction="How do I bake rye bread at home?"))
    assert sampling_seed(reworded, 1) != seed
    as_system = [m.model_copy(update={"role": "system"}) for m in first_round]
    assert sampling_seed(as_system, 1) != seed
