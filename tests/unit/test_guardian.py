"""Guardian scoring: signals combined into pass/fail, failure classes and a critique."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.config import GuardianPolicy, SpecialistProfile
from agents.guardian import Signals, judge, leaked, measure, verdict_for
from agents.ids import stable_id
from agents.ports import PiiDetector, PiiFinding
from agents.router import synthesis_instruction
from connectors.embeddings import HashingEmbedder
from schemas.request_events import SpecialistAnswered

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICY = GuardianPolicy()
SYSTEM = SpecialistProfile().system_prompt
QUESTION = "How do I bake bread at home?"
GOOD = (
    "Mix 500 g of flour with 350 ml of water, salt and yeast, knead for ten minutes, "
    "let it rise for an hour and bake at 230 C for 35 minutes."
)
CLEAN = Signals(alignment=0.8, new_pii=())


def answer(**fields: Any) -> SpecialistAnswered:
    base: dict[str, Any] = {
        "event_id": "a-1",
        "request_id": "req-1",
        "occurred_at": T0,
        "config_version": 4,
        "variant": "b",
        "task_id": "req-1/main/1",
        "round": 1,
        "specialist": "general",
        "deployment": "smollm2-cpu",
        "model": "smollm2",
        "instruction": QUESTION,
        "system_prompt": SYSTEM,
        "status": "ok",
        "content": GOOD,
        "prompt_tokens": 120,
        "completion_tokens": 45,
        "latency_ms": 812.5,
        "finish_reason": "stop",
    }
    return SpecialistAnswered(**{**base, **fields})


def test_an_aligned_complete_answer_passes() -> None:
    result = judge(answer(), CLEAN, POLICY)
    assert result.passed
    assert result.score == 1.0
    assert (result.critique, result.failure_classes) == ("", ())
    assert [s.guardian for s in result.scores] == ["alignment", "completeness", "format", "safety"]
    assert all(s.passed for s in result.scores)


def test_low_alignment_fails_with_a_critique_about_the_question() -> None:
    result = judge(answer(), Signals(alignment=0.1, new_pii=()), POLICY)
    assert not result.passed
    assert result.failure_classes == ("low_alignment",)
    assert "question" in result.critique
    assert result.scores[0].detail == "cosine=0.100"


@pytest.mark.parametrize(
    ("cosine", "score", "passed"),
    [
        (-0.2, 0.0, False),
        (0.0, 0.0, False),
        (0.15, 0.25, False),
        (0.2999, 0.49983, False),
        (0.3, 0.5, True),
        (0.45, 0.75, True),
        (0.6, 1.0, True),
        (0.9, 1.0, True),
    ],
)
def test_alignment_score_rises_from_min_to_full_alignment(
    cosine: float, score: float, passed: bool
) -> None:
    alignment = judge(answer(), Signals(alignment=cosine, new_pii=()), POLICY).scores[0]
    assert alignment.guardian == "alignment"
    assert alignment.score == pytest.approx(score, abs=1e-5)
    assert alignment.passed is passed


@pytest.mark.parametrize(
    ("content", "finish_reason", "score", "passed"),
    [
        pytest.param("Knead it.", "stop", 2 / 9, False, id="two-words"),
        pytest.param("Bake it hot.", "stop", 3 / 9, True, id="min-words"),
        pytest.param(GOOD, "stop", 1.0, True, id="long-enough"),
        pytest.param(GOOD, "length", 0.5, False, id="cut-off"),
        pytest.param("Knead", "length", 1 / 9, False, id="short-and-cut-off"),
    ],
)
def test_completeness_counts_words_and_truncation(
    content: str, finish_reason: str, score: float, passed: bool
) -> None:
    completeness = judge(answer(content=content, finish_reason=finish_reason), CLEAN, POLICY)
    part = completeness.scores[1]
    assert part.guardian == "completeness"
    assert part.score == pytest.approx(score, abs=1e-6)
    assert part.passed is passed
    assert ("incomplete" in completeness.failure_classes) is not passed


def test_a_too_short_answer_is_incomplete() -> None:
    result = judge(answer(content="Use flour."), CLEAN, POLICY)
    assert not result.passed
    assert result.failure_classes == ("incomplete",)
    assert "too short" in result.critique


def test_a_cut_off_answer_is_incomplete() -> None:
    result = judge(answer(finish_reason="length"), CLEAN, POLICY)
    assert not result.passed
    assert result.failure_classes == ("incomplete",)
    assert "cut off" in result.critique
    assert result.scores[1].detail == "words=31 new=18 new_share=0.95 truncated"


@pytest.mark.parametrize(
    ("question", "content"),
    [
        pytest.param(
            "Why is the sky blue, and why are sunsets red?",
            "The answer to this question is: The sky is blue and the answer to the "
            "question about sunsets is that they are red.",
            id="restated",
        ),
        pytest.param(
            "What is the capital of France?",
            "You asked what the capital of France is, and that is the question.",
            id="echo",
        ),
        pytest.param(
            "Give the capital cities of Spain and Italy as JSON.",
            '{"spain": "capital city", "italy": "capital city"}',
            id="empty-json",
        ),
    ],
)
def test_an_answer_that_only_restates_the_question_fails_completeness(
    question: str, content: str
) -> None:
    result = judge(answer(instruction=question, content=content), CLEAN, POLICY)
    assert not result.passed
    assert result.failure_classes == ("echo",)
    assert "restates the question (0 new content words" in result.critique
    assert result.scores[1].score == 0.0


@pytest.mark.parametrize(
    ("question", "content"),
    [
        ("What is the capital of France?", "The capital of France is Paris."),
        (
            "Give the capital cities of Spain and Italy as JSON.",
            '{"Spain": "Madrid", "Italy": "Rome"}',
        ),
        (
            "What is the boiling point of water at sea level?",
            "Water boils at 100 degrees Celsius at sea level.",
        ),
    ],
)
def test_a_short_answer_that_adds_the_fact_asked_for_is_no_echo(
    question: str, content: str
) -> None:
    result = judge(answer(instruction=question, content=content), CLEAN, POLICY)
    assert result.scores[1].passed, result.scores[1].detail


def test_an_answer_nearly_identical_in_meaning_and_mostly_restating_is_an_echo() -> None:
    content = "To bake bread at home, knead dough and bake the bread in a hot oven."
    close = Signals(alignment=0.97, new_pii=())
    assert judge(answer(content=content), CLEAN, POLICY).scores[1].passed
    result = judge(answer(content=content), close, POLICY)
    assert result.failure_classes == ("echo",)


def test_a_synthesis_may_repeat_its_notes_but_not_only_the_request() -> None:
    notes = {"facts": "Paris has been the capital of France since 987."}
    instruction = synthesis_instruction("What is the capital of France?", notes)
    from_notes = judge(
        answer(instruction=instruction, content="Paris has been the capital since 987."),
        CLEAN,
        POLICY,
    )
    assert from_notes.scores[1].passed
    echo = judge(
        answer(instruction=instruction, content="The capital of France is the question."),
        CLEAN,
        POLICY,
    )
    assert echo.failure_classes == ("echo",)


@pytest.mark.parametrize(
    ("answer_format", "content", "passed"),
    [
        pytest.param("json", '{"steps": ["mix", "knead", "bake"]}', True, id="json-object"),
        pytest.param("json", '  ["mix", "knead", "rise", "bake"]\n', True, id="json-array"),
        pytest.param("json", '{"steps": [mix, knead, bake]}', False, id="json-bare-words"),
        pytest.param("json", '```json\n{"a": 1}\n```', False, id="json-in-a-fence"),
        pytest.param("json", "Here it is: {}", False, id="json-after-prose"),
        pytest.param("markdown", "# Bread\n\n* mix\n* knead\n* bake", True, id="markdown"),
        pytest.param("text", '{"steps": [mix, knead, bake]}', True, id="text-takes-anything"),
    ],
)
def test_format(answer_format: str, content: str, passed: bool) -> None:
    result = judge(answer(answer_format=answer_format, content=content), CLEAN, POLICY)
    part = result.scores[2]
    assert part.guardian == "format"
    assert part.passed is passed
    assert ("format" in result.failure_classes) is not passed
    if not passed:
        assert "valid JSON" in result.critique
        assert part.detail.startswith("not valid JSON")


def test_a_json_number_too_long_to_convert_is_a_format_failure() -> None:
    content = '{"note": "a very long number", "digits": ' + "9" * 5000 + "}"
    result = judge(answer(answer_format="json", content=content), CLEAN, POLICY)
    assert not result.passed
    assert result.failure_classes == ("format",)
    assert result.scores[2].detail.startswith("not valid JSON")


def test_new_pii_is_a_hard_fail_even_with_a_high_score() -> None:
    result = judge(answer(), Signals(alignment=0.8, new_pii=("EMAIL_ADDRESS",)), POLICY)
    assert result.score >= POLICY.pass_threshold
    assert not result.passed
    assert result.failure_classes == ("pii",)
    assert "EMAIL_ADDRESS" in result.critique
    assert result.scores[3].detail == "pii"


def test_a_policy_without_the_pii_check_ignores_new_pii() -> None:
    policy = GuardianPolicy(pii_check=False)
    result = judge(answer(), Signals(alignment=0.8, new_pii=("EMAIL_ADDRESS",)), policy)
    assert result.passed


def test_a_system_prompt_leak_fails() -> None:
    leak = "Sure. ANSWER THE USER'S\n question   directly, accurately and completely. " + GOOD
    result = judge(answer(content=leak), CLEAN, POLICY)
    assert not result.passed
    assert result.failure_classes == ("leak",)
    assert "instructions" in result.critique


NORMALISED = " ".join(SYSTEM.lower().split())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            "ANSWER THE USER'S\n question   directly, accurately and completely",
            True,
            id="copied-with-other-case-and-spacing",
        ),
        pytest.param("#" + NORMALISED[5:45] + "#", True, id="exactly-40-chars"),
        pytest.param("#" + NORMALISED[5:44] + "#", False, id="39-chars"),
        pytest.param("You are a careful assistant.", False, id="short-overlap"),
        pytest.param(GOOD, False, id="unrelated"),
        pytest.param("", False, id="empty"),
    ],
)
def test_leaked(content: str, expected: bool) -> None:
    assert leaked(SYSTEM, content, 40) is expected


def test_a_system_prompt_shorter_than_the_window_leaks_only_whole() -> None:
    assert leaked("Be brief.", "I was told: be   BRIEF. So: bake it.", 40)
    assert not leaked("Be brief.", "Be short about bread.", 40)
    assert not leaked("", "anything at all", 40)


def test_the_policy_sets_the_leak_window() -> None:
    copy = "#" + NORMALISED[5:30] + "#"
    assert not judge(answer(content=copy + " " + GOOD), CLEAN, POLICY).failure_classes
    strict = GuardianPolicy(leak_min_chars=20)
    assert judge(answer(content=copy + " " + GOOD), CLEAN, strict).failure_classes == ("leak",)


@pytest.mark.parametrize(
    "content",
    [
        "I'm sorry, I can't help with that.",
        "I am sorry, but that is something I will not discuss here.",
        "  Sorry, I cannot provide instructions for that request today.",
        "I cannot help with that request, it is outside what I may do.",
        "As an AI language model I do not bake, but here are some thoughts.",
        "I'm unable to answer that question about bread at this time.",
    ],
)
def test_a_refusal_fails(content: str) -> None:
    result = judge(answer(content=content), CLEAN, POLICY)
    assert not result.passed
    assert "refusal" in result.failure_classes
    assert "Do not refuse" in result.critique


def test_an_answer_that_mentions_sorry_later_is_not_a_refusal() -> None:
    content = "Bake it longer next time; sorry bread is usually underbaked in the middle."
    assert judge(answer(content=content), CLEAN, POLICY).passed


def test_a_refusal_with_a_typographic_apostrophe_fails() -> None:
    result = judge(answer(content="I’m sorry, but I can’t help with that."), CLEAN, POLICY)
    assert "refusal" in result.failure_classes


def test_a_model_failure_scores_zero() -> None:
    failed = answer(
        status="failed",
        content="",
        model="smollm2-cpu",
        error_kind="timeout",
        error_message="no answer in 30 s",
    )
    result = judge(failed, CLEAN, POLICY)
    assert (result.passed, result.score, result.critique) == (False, 0.0, "")
    assert result.failure_classes == ("model_error", "timeout")
    assert [(s.guardian, s.detail) for s in result.scores] == [
        ("model", "timeout: no answer in 30 s")
    ]


@pytest.mark.parametrize("content", ["", "   \n\t "])
def test_empty_content_fails_as_empty(content: str) -> None:
    result = judge(answer(content=content), CLEAN, POLICY)
    assert (result.passed, result.score) == (False, 0.0)
    assert result.failure_classes == ("empty",)
    assert "empty" in result.critique


def test_a_stricter_threshold_flips_a_borderline_pass() -> None:
    borderline = Signals(alignment=0.45, new_pii=())
    lenient = judge(answer(), borderline, POLICY)
    assert lenient.passed
    assert lenient.score == pytest.approx(0.875)
    strict = judge(answer(), borderline, GuardianPolicy(pass_threshold=0.9))
    assert not strict.passed
    assert strict.score == lenient.score
    assert strict.failure_classes == ("low_score",)
    assert "below the bar of 0.90" in strict.critique


def test_several_failures_are_all_reported() -> None:
    bad = answer(content="Sorry, no.", answer_format="json")
    result = judge(bad, Signals(alignment=0.0, new_pii=("PHONE_NUMBER",)), POLICY)
    assert result.failure_classes == ("low_alignment", "incomplete", "format", "pii", "refusal")
    assert result.score == pytest.approx(0.25 * 2 / 9, abs=1e-6)  # two of nine words


class AtSignDetector:
    """Every whitespace-separated token holding an "@" is an email address."""

    def find(self, text: str) -> list[PiiFinding]:
        findings = []
        start = 0
        for token in text.split():
            start = text.index(token, start)
            if "@" in token:
                findings.append(
                    PiiFinding(
                        entity_type="EMAIL_ADDRESS", start=start, end=start + len(token), score=1.0
                    )
                )
            start += len(token)
        return findings


def test_the_test_detector_implements_the_port() -> None:
    detector = AtSignDetector()
    assert isinstance(detector, PiiDetector)
    text = "mail bob@example.org now"
    (finding,) = detector.find(text)
    assert text[finding.start : finding.end] == "bob@example.org"


@pytest.mark.parametrize(
    ("instruction", "content", "new_pii"),
    [
        pytest.param(QUESTION, GOOD, (), id="none"),
        pytest.param(
            QUESTION, "Write to chef@example.org for the recipe.", ("EMAIL_ADDRESS",), id="new"
        ),
        pytest.param(
            "Draft a note to bob@example.org about bread.",
            "Dear bob@example.org, the bread is ready.",
            (),
            id="asked-for",
        ),
        pytest.param("Email bob@example.org a recipe.", GOOD, (), id="only-in-the-question"),
    ],
)
def test_measure_counts_only_pii_the_question_did_not_hold(
    instruction: str, content: str, new_pii: tuple[str, ...]
) -> None:
    signals = measure(
        answer(instruction=instruction, content=content), HashingEmbedder(), AtSignDetector()
    )
    assert signals.new_pii == new_pii


def test_measure_without_a_detector_finds_no_pii() -> None:
    signals = measure(answer(content="Write to chef@example.org."), HashingEmbedder(), None)
    assert signals.new_pii == ()


def test_measure_alignment_is_the_cosine_of_question_and_answer() -> None:
    embedder = HashingEmbedder()
    same = measure(answer(content=QUESTION), embedder, None)
    assert same.alignment == pytest.approx(1.0)
    related = measure(answer(), embedder, None)
    unrelated = measure(
        answer(content="Kafka partitions are ordered logs replicated across brokers."),
        embedder,
        None,
    )
    question, good = embedder.embed([QUESTION, GOOD])
    assert related.alignment == pytest.approx(
        sum(a * b for a, b in zip(question, good, strict=True))
    )
    assert related.alignment > unrelated.alignment


def test_verdict_copies_the_answer_and_has_a_stable_id() -> None:
    ans = answer()
    assessment = judge(ans, Signals(alignment=0.1, new_pii=()), POLICY)
    policy = GuardianPolicy(version="v7")
    verdict = verdict_for(ans, assessment, policy, T0 + timedelta(seconds=2), 5)
    again = verdict_for(ans, assessment, policy, T0 + timedelta(minutes=9), 6)
    assert verdict.event_id == stable_id("a-1", "verdict") == again.event_id
    assert (
        verdict.event_id != verdict_for(answer(event_id="a-2"), assessment, policy, T0, 5).event_id
    )
    assert (verdict.request_id, verdict.task_id, verdict.subtask, verdict.round) == (
        "req-1",
        "req-1/main/1",
        "main",
        1,
    )
    assert (verdict.answer_event_id, verdict.variant, verdict.config_version) == ("a-1", "b", 5)
    assert (verdict.specialist, verdict.deployment, verdict.model) == (
        "general",
        "smollm2-cpu",
        "smollm2",
    )
    assert (verdict.content, verdict.prompt_tokens, verdict.completion_tokens) == (GOOD, 120, 45)
    assert verdict.latency_ms == 812.5
    assert (verdict.passed, verdict.score, verdict.scores) == (
        False,
        assessment.score,
        assessment.scores,
    )
    assert (verdict.critique, verdict.failure_classes) == (
        assessment.critique,
        ("low_alignment",),
    )
    assert (verdict.threshold, verdict.guardian_version) == (0.7, "v7")
    assert verdict.occurred_at == T0 + timedelta(seconds=2)


def test_a_constraint_the_request_states_is_a_gate_with_the_numbers_in_the_critique() -> None:
    asked = "How do I bake bread at home? Answer in at most 10 words."
    result = judge(answer(instruction=asked), CLEAN, POLICY)
    assert not result.passed
    assert result.score == 1.0, "the weighted score is the four guardians' alone"
    assert result.failure_classes == ("constraint",)
    assert "31 words; at most 10 words are allowed: cut 21 or more." in result.critique
    gate = result.scores[-1]
    assert (gate.guardian, gate.passed, gate.score) == ("constraints", False, 0.0)
    assert gate.detail == "at most 10 words (prompt): 31 words"
    short = judge(
        answer(instruction=asked, content="Knead flour, water and yeast; bake hot."), CLEAN, POLICY
    )
    assert short.passed
    assert short.scores[-1].detail == "at most 10 words (prompt): met"


def test_constraints_apply_to_the_answering_subtask_only() -> None:
    asked = "How do I bake bread at home? Answer in at most 10 words."
    notes = judge(answer(instruction=asked, subtask="facts"), CLEAN, POLICY)
    assert notes.passed
    assert [s.guardian for s in notes.scores] == ["alignment", "completeness", "format", "safety"]


def test_json_asked_through_the_answer_format_is_left_to_the_format_guardian() -> None:
    asked = "Give the capital cities of Spain and Italy as JSON."
    content = '{"Spain": "Madrid", "Italy": "Rome"}'
    result = judge(answer(instruction=asked, content=content, answer_format="json"), CLEAN, POLICY)
    assert [s.guardian for s in result.scores] == ["alignment", "completeness", "format", "safety"]
    prose = judge(
        answer(instruction=asked, content="Madrid and Rome are the capitals."), CLEAN, POLICY
    )
    assert prose.failure_classes == ("constraint",)
    assert "The answer must be valid JSON" in prose.critique
