"""Cross-specialist learning's pure core: pairs counted across specialists per scope and
failure class, a lesson learned once, proposed as a config change, given to every
specialist of its scope, and kept or retired by its experiment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.config import PipelineConfig
from agents.config_values import apply_change
from agents.experiment import Decision
from agents.lessons import (
    LESSONS_KEY,
    LessonBook,
    LessonRules,
    lesson_text,
    observe,
    propose,
    scope_of,
    settled,
)
from agents.network_facts import NetworkRules, refold
from agents.refine import start
from agents.router import route_request
from schemas.network_events import ExperimentConcluded, LessonLearned, NetworkFactRecorded
from schemas.request_events import RequestSubmitted

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = LessonRules(min_pairs=3)
JSON_LESSON = lesson_text("json", "format") or ""


def fact(
    n: int,
    *,
    specialist: str = "general",
    round_: int = 2,
    passed: bool = True,
    reasked_for: tuple[str, ...] = ("format",),
    answer_format: str = "json",
    task_class: str = "factual",
) -> NetworkFactRecorded:
    return NetworkFactRecorded(
        event_id=f"f{n}",
        request_id=f"r{n}",
        occurred_at=T0 + timedelta(seconds=n),
        fact="verdict",
        source_event_id=f"v{n}",
        recorded_at=T0 + timedelta(seconds=n),
        round=round_,
        passed=passed,
        specialist=specialist,
        answer_format=answer_format,
        task_class=task_class,
        reasked_for=reasked_for,
    )


def fold(facts: list[NetworkFactRecorded]) -> tuple[LessonBook, list[LessonLearned]]:
    book, found = LessonBook(), []
    for f in facts:
        book, learned = observe(book, f, f.occurred_at, RULES)
        found += learned
    return book, found


def test_pairs_of_two_specialists_make_one_lesson_for_their_scope() -> None:
    facts = [fact(1), fact(2, specialist="synthesis"), fact(3), fact(4), fact(5)]
    book, found = fold(facts)
    [lesson] = found
    assert (lesson.scope, lesson.failure_class, lesson.version) == ("json", "format", 1)
    assert lesson.state == "learned"
    assert lesson.text == JSON_LESSON
    assert lesson.learned_from == ("general", "synthesis")
    assert lesson.pairs == 3
    assert lesson.occurred_at == T0 + timedelta(seconds=3)
    assert lesson.lesson_id in book.learned, "learned once: later pairs teach nothing new"


def test_what_is_no_pair_is_not_counted() -> None:
    facts = [
        fact(1, passed=False),  # still failing
        fact(2, round_=1, reasked_for=()),  # passed at once
        fact(3, reasked_for=("model_error",)),  # no lesson for a model error
        fact(4, reasked_for=()),  # a later round that was no re-ask of a failure
    ]
    book, found = fold(facts)
    assert found == []
    assert book.tallies == {}


def test_scopes_are_counted_apart() -> None:
    facts = [fact(1), fact(2), fact(3, answer_format="text", task_class="code")]
    book, found = fold(facts)
    assert found == []
    assert {k: t.pairs for k, t in book.tallies.items()} == {"json|format": 2, "code|format": 1}


def test_scope_is_the_format_when_not_text_else_the_task_class() -> None:
    assert scope_of("json", "factual") == "json"
    assert scope_of("text", "code") == "code"
    assert scope_of("text", "") == "any"


def lesson() -> LessonLearned:
    [learned] = fold([fact(1), fact(2), fact(3)])[1]
    return learned


def test_a_lesson_is_proposed_as_one_more_entry_of_its_scope() -> None:
    config = PipelineConfig(version=4)
    p = propose(lesson(), config)
    assert p is not None
    assert (p.key, p.kind, p.current_value) == (LESSONS_KEY, "lesson", "{}")
    assert p.diagnosis_id == lesson().lesson_id
    promoted = apply_change(config, p.key, p.proposed_value)
    assert promoted.specialist.lessons == {"json": [JSON_LESSON]}
    assert propose(lesson(), promoted) is None, "a lesson already given is not proposed again"


def _first_tasks(config: PipelineConfig, prompt: str) -> dict[str, str]:
    request = RequestSubmitted(
        event_id="e", request_id="r", occurred_at=T0, prompt=prompt, answer_format="json"
    )
    step = start(request, "d", T0, config, deployment="m", plan=route_request(prompt))
    return {t.subtask: t.system_prompt for t in step.tasks}


def test_the_tasks_of_the_scope_are_given_the_lesson_and_no_others() -> None:
    config = apply_change(PipelineConfig(), LESSONS_KEY, f'{{"json": ["{JSON_LESSON}"]}}')
    simple = _first_tasks(config, "What is the capital of France?")
    assert JSON_LESSON in simple["main"], "the one task answers in JSON"
    without = _first_tasks(PipelineConfig(), "What is the capital of France?")
    assert JSON_LESSON not in without["main"]
    parts = _first_tasks(
        config, "Name the capital of France. Name the capital of Spain. Name the capital of Italy."
    )
    assert set(parts) == {"ask-1", "ask-2", "ask-3"}
    assert not any(JSON_LESSON in p for p in parts.values()), "the parts answer in text"


def _concluded(decision: Decision) -> ExperimentConcluded:
    return ExperimentConcluded(
        event_id="c",
        request_id="x",
        occurred_at=T0 + timedelta(hours=1),
        experiment_id="x",
        proposal_id="p",
        control_n=40,
        control_passes=10,
        treatment_n=40,
        treatment_passes=30,
        control_mean_score=0.5,
        treatment_mean_score=0.8,
        effect_size=0.5,
        p_value_pass_rate=0.001,
        p_value_scores=0.01,
        decision=decision,
    )


def test_a_promoted_lesson_is_kept_and_any_other_outcome_retires_it() -> None:
    kept = settled(lesson(), _concluded("promote"))
    assert (kept.state, kept.version, kept.experiment_id) == ("kept", 2, "x")
    assert "30/40 with the lesson against 10/40 without" in kept.reason
    assert kept.event_id != lesson().event_id
    assert settled(lesson(), _concluded("rollback")).state == "retired"
    assert settled(lesson(), _concluded("inconclusive")).state == "retired"


def test_the_network_fold_learns_the_lesson_and_a_refold_re_derives_it() -> None:
    rules = NetworkRules(window=timedelta(minutes=5), lessons=RULES)
    facts = [fact(n) for n in range(1, 5)]
    found = [e for e in refold(facts, rules) if isinstance(e, LessonLearned)]
    assert [e.event_id for e in found] == [lesson().event_id]
