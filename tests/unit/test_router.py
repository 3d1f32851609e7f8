"""Routing rules: task class, complexity level and the shape of the plan."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.router import (
    Complexity,
    Plan,
    Subtask,
    TaskClass,
    classify,
    complexity,
    plan,
    ready,
    split_asks,
    synthesis_instruction,
)

COMPARE = (
    "Compare Kafka and RabbitMQ for event sourcing, explain why ordering guarantees matter, "
    "and then recommend one for a bank's payment ledger step by step."
)
NUMBERED = (
    "Answer the following:\n1. What is a partition?\n2. Why are offsets kept per partition?\n"
    "3. How does a consumer group rebalance?"
)
BAKERY = (
    "I run a small bakery. How should I price sourdough, and then draft a short ad for it? "
    "Finally, evaluate whether a loyalty card would pay off."
)
THREE_QUESTIONS = "What is Kafka? What is RabbitMQ? Which one is older?"
ARTICLE = (
    "Summarize the following article:\nKafka is a distributed log. Why does it matter? "
    "Explain it. How does it scale? Compare it with queues. It partitions topics."
)


def make_plan(prompt: str, context: tuple[str, ...] = ()) -> Plan:
    return plan(
        prompt, task_class=classify(prompt), complexity=complexity(prompt), session_context=context
    )


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is the capital of France?", "factual"),
        ("Who wrote Hamlet", "factual"),
        ("Tell me about the Baltic Sea.", "factual"),
        ("Is Kafka open source?", "factual"),
        ("Why is the sky blue?", "reasoning"),
        ("Explain how TCP slow start works.", "reasoning"),
        ("What is 17 * 23?", "reasoning"),
        ("Should I rent or buy a flat?", "reasoning"),
        ("Summarize this: the meeting moved to Tuesday.", "summarization"),
        ("tl;dr of the French revolution please", "summarization"),
        ("Write a Python function that reverses a linked list.", "code"),
        ("Why does this throw?\n```\nx = [][0]\n```", "code"),
        ("Write a haiku about autumn rain.", "creative"),
        ("Brainstorm names for a bakery", "creative"),
        ("Hello!", "conversation"),
        ("How are you today?", "conversation"),
        ("Thanks, that helped a lot", "conversation"),
        ("I love rainy days.", "conversation"),
    ],
)
def test_classify(prompt: str, expected: TaskClass) -> None:
    assert classify(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "level", "asks"),
    [
        ("What is the capital of France?", "simple", 1),
        ("Hello!", "simple", 1),
        ("Why is the sky blue?", "simple", 1),
        ("What is Kafka? What is RabbitMQ?", "simple", 2),
        (ARTICLE, "simple", 1),  # questions inside the material are not asks
        ("Explain step by step why the sky is blue.", "moderate", 1),
        (THREE_QUESTIONS, "moderate", 3),
        (COMPARE, "complex", 3),
        (NUMBERED, "complex", 3),
        (BAKERY, "complex", 3),
    ],
)
def test_complexity_level(prompt: str, level: str, asks: int) -> None:
    c = complexity(prompt)
    assert (c.level, c.asks) == (level, asks)
    assert 0.0 <= c.score <= 1.0


def test_complexity_features_are_reported() -> None:
    c = complexity(COMPARE)
    assert c.reasoning_cues == 3  # explain, why, step by step
    assert c.structure == 2  # compare, then
    assert c.questions == 0
    assert c.words == len(COMPARE.split())


def test_length_alone_raises_the_score_but_not_to_complex() -> None:
    long = "Tell me about the history of Kafka " + "in great detail " * 60
    assert complexity(long).score > complexity("Tell me about Kafka").score
    assert complexity(long).level == "simple"


@pytest.mark.parametrize(
    ("prompt", "asks"),
    [
        (COMPARE, 3),
        (NUMBERED, 3),
        ("Summarize the report and then translate it into French.", 2),
        ("Explain what Kafka is and why it matters.", 1),  # "why" is not an ask verb
        ("Compare cats and dogs.", 1),
        ("- apples\n- pears\nWhich is sweeter?", 1),  # list items that do not ask
    ],
)
def test_split_asks(prompt: str, asks: int) -> None:
    assert len(split_asks(prompt)) == asks


def test_split_asks_keeps_the_words_of_each_ask() -> None:
    assert split_asks(COMPARE) == (
        "Compare Kafka and RabbitMQ for event sourcing",
        "explain why ordering guarantees matter",
        "recommend one for a bank's payment ledger step by step.",
    )


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the capital of France?",
        "Hello!",
        "What is Kafka? What is RabbitMQ?",
        "Explain step by step why the sky is blue.",  # moderate, but a single ask
        ARTICLE,
    ],
)
def test_a_simple_or_single_ask_request_is_one_main_task_for_general(prompt: str) -> None:
    p = make_plan(prompt)
    assert p.single
    (only,) = p.subtasks
    assert (only.subtask, only.specialist, only.instruction, only.depends_on) == (
        "main",
        "general",
        prompt,
        (),
    )


@pytest.mark.parametrize("prompt", [COMPARE, NUMBERED, BAKERY])
def test_a_complex_request_fans_out_then_synthesises(prompt: str) -> None:
    p = make_plan(prompt)
    *work, final = p.subtasks
    assert len({s.specialist for s in work}) >= 3
    assert {"retrieval", "qa"} <= {s.specialist for s in work}
    assert all(s.depends_on == () for s in work)  # in parallel
    assert final.specialist == "synthesis"
    assert final.depends_on == tuple(s.subtask for s in work)


def test_a_complex_plan_has_one_subtask_per_ask_in_order() -> None:
    ids = [(s.subtask, s.specialist) for s in make_plan(COMPARE).subtasks]
    assert ids == [
        ("facts", "retrieval"),
        ("ask-1", "reasoning"),
        ("ask-2", "reasoning"),
        ("ask-3", "reasoning"),
        ("pitfalls", "qa"),
        ("synthesis", "synthesis"),
    ]


def test_each_ask_instruction_names_its_part_and_the_whole_request() -> None:
    ask = make_plan(COMPARE).subtasks[2]
    assert ask.instruction.startswith("Answer only this part: explain why ordering")
    assert COMPARE in ask.instruction


def test_asks_without_reasoning_cues_go_to_general() -> None:
    p = make_plan(THREE_QUESTIONS)
    assert [(s.subtask, s.specialist) for s in p.subtasks] == [
        ("ask-1", "general"),
        ("ask-2", "general"),
        ("ask-3", "general"),
        ("synthesis", "synthesis"),
    ]


def test_a_complex_single_ask_gets_one_reasoning_subtask() -> None:
    prompt = "Why do distributed logs explain so much, step by step? " + "Really. " * 5
    c = Complexity(
        score=0.7, level="complex", words=1, questions=1, asks=1, reasoning_cues=3, structure=0
    )
    p = plan(prompt, task_class="reasoning", complexity=c, session_context=())
    assert [s.subtask for s in p.subtasks] == ["facts", "reasoning", "pitfalls", "synthesis"]


def test_a_complex_summary_gathers_no_facts() -> None:
    c = complexity(COMPARE)
    p = plan(COMPARE, task_class="summarization", complexity=c, session_context=())
    assert "retrieval" not in {s.specialist for s in p.subtasks}
    assert "omitted key points" in next(s for s in p.subtasks if s.specialist == "qa").instruction


def test_session_context_is_carried_and_noted() -> None:
    p = make_plan(COMPARE, context=("User: hi\nAssistant: hello",))
    assert p.context == ("User: hi\nAssistant: hello",)
    assert p.subtasks[0].instruction.startswith("This continues the conversation")
    simple = make_plan("What is Kafka?", context=("User: hi\nAssistant: hello",))
    assert simple.subtasks[0].instruction == "What is Kafka?"  # the main task is untouched


def test_the_synthesis_rule_says_how_to_combine() -> None:
    final = make_plan(COMPARE).subtasks[-1]
    assert "(ask-1, ask-2, ask-3)" in final.instruction
    assert "'facts'" in final.instruction
    assert "'pitfalls'" in final.instruction


def test_ready_releases_synthesis_only_when_everything_is_done() -> None:
    p = make_plan(COMPARE)
    work = [s.subtask for s in p.subtasks[:-1]]
    assert [s.subtask for s in ready(p, ())] == work
    assert "synthesis" not in [s.subtask for s in ready(p, work[:-1])]
    assert [s.subtask for s in ready(p, work)] == ["synthesis"]
    assert ready(p, [*work, "synthesis"]) == ()


def test_a_plan_rejects_a_dependency_on_a_later_or_unknown_subtask() -> None:
    c = complexity("x")
    first = Subtask(subtask="a", specialist="general", instruction="x", depends_on=("b",))
    second = Subtask(subtask="b", specialist="general", instruction="y")
    with pytest.raises(ValidationError, match="unknown or later"):
        Plan(task_class="factual", complexity=c, subtasks=(first, second))
    with pytest.raises(ValidationError, match="duplicate"):
        Plan(task_class="factual", complexity=c, subtasks=(second, second))


def test_synthesis_instruction_orders_notes_independent_of_arrival() -> None:
    results = {"pitfalls": "P", "ask-10": "A10", "ask-2": "A2", "facts": "F", "ask-1": ""}
    text = synthesis_instruction("Q?", results)
    order = [text.index(f"[{k}]") for k in ("facts", "ask-1", "ask-2", "ask-10", "pitfalls")]
    assert order == sorted(order)
    assert "[ask-1]\n(no answer)" in text
    assert "Original request:\nQ?" in text
    assert synthesis_instruction("Q?", dict(reversed(results.items()))) == text


def test_synthesis_instruction_clips_long_notes() -> None:
    text = synthesis_instruction("Q?", {"facts": "word " * 1000}, max_note_chars=50)
    note = text.split("[facts]\n", 1)[1]
    assert len(note) <= 50
    assert note.endswith("…")
