"""The refinement state machine: start, verdicts, deadline, and the one final response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.config import PipelineConfig, RefinePolicy, SpecialistProfile
from agents.ids import stable_id
from agents.refine import (
    RequestState,
    Step,
    best_attempt,
    closed,
    on_deadline,
    on_verdict,
    rejected,
    round_temperature,
    start,
)
from schemas.request_events import GuardianScore, RequestSubmitted, VerdictIssued

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=4)
DEPLOYMENT = "smollm2-cpu"
DIGEST = "d" * 64


def submitted(**fields: Any) -> RequestSubmitted:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "request_id": "req-1",
        "occurred_at": T0,
        "prompt": "How do I bake bread at home?",
        "tenant": "acme",
        "session_id": "s-1",
        "variant": "b",
        "priority": 7,
        "answer_format": "markdown",
    }
    return RequestSubmitted(**{**base, **fields})


def begin(config: PipelineConfig = CONFIG, **fields: Any) -> RequestState:
    return start(submitted(**fields), DIGEST, T0, config, deployment=DEPLOYMENT).state


def verdict(
    round_: int, *, passed: bool = False, score: float = 0.5, **fields: Any
) -> VerdictIssued:
    """The guardians' verdict on the answer of ``round_`` (content names the round)."""
    base: dict[str, Any] = {
        "event_id": f"v-{round_}",
        "request_id": "req-1",
        "occurred_at": T0 + timedelta(seconds=round_),
        "task_id": f"req-1/main/{round_}",
        "round": round_,
        "answer_event_id": f"a-{round_}",
        "passed": passed,
        "score": score,
        "threshold": 0.7,
        "critique": "" if passed else f"critique of round {round_}",
        "specialist": "general",
        "model": "smollm2",
        "content": f"answer of round {round_}",
        "prompt_tokens": 100,
        "completion_tokens": 40,
    }
    return VerdictIssued(**{**base, **fields})


def model_error(round_: int) -> VerdictIssued:
    return verdict(
        round_,
        score=0.0,
        content="",
        critique="",
        failure_classes=("model_error", "timeout"),
        model=DEPLOYMENT,
        prompt_tokens=0,
        completion_tokens=0,
    )


def play(
    state: RequestState, *verdicts: VerdictIssued, config: PipelineConfig = CONFIG
) -> tuple[RequestState, Step]:
    """Feed the verdicts in order, each a second after the last; the state and last step."""
    step = Step(state=state)
    for i, v in enumerate(verdicts, start=1):
        step = on_verdict(step.state, v, T0 + timedelta(seconds=i), config)
    return step.state, step


def scored(*scores: float) -> tuple[VerdictIssued, ...]:
    return tuple(verdict(i, score=s) for i, s in enumerate(scores, start=1))


def test_start_assigns_round_one_with_a_deterministic_task() -> None:
    step = start(submitted(), DIGEST, T0, CONFIG, deployment=DEPLOYMENT)
    again = start(submitted(event_id="e-2"), DIGEST, T0, CONFIG, deployment=DEPLOYMENT)
    task = step.task
    assert task is not None
    assert task == again.task
    assert task.task_id == "req-1/main/1"
    assert task.event_id == stable_id("req-1/main/1", "task")
    assert task.round == 1
    assert (task.critique, task.previous_attempt) == (None, None)
    assert step.response is None
    assert step.state.round == 1
    assert step.state.current_task == task
    assert not step.state.done


def test_the_first_task_carries_the_request_and_the_profile() -> None:
    config = PipelineConfig(version=9, specialist=SpecialistProfile(name="chef", temperature=0.7))
    task = start(submitted(), DIGEST, T0, config, deployment=DEPLOYMENT).task
    assert task is not None
    assert task.instruction == "How do I bake bread at home?"
    assert (task.answer_format, task.priority, task.variant) == ("markdown", 7, "b")
    assert (task.specialist, task.deployment, task.temperature) == ("chef", DEPLOYMENT, 0.7)
    assert task.system_prompt == config.specialist.system_prompt
    assert task.config_version == 9
    assert task.deadline_at == T0 + timedelta(seconds=120)


def test_start_records_the_request() -> None:
    deadline = T0 + timedelta(seconds=30)
    state = begin(deadline_at=deadline)
    assert state.deadline_at == deadline
    assert state.current_task is not None
    assert state.current_task.deadline_at == deadline
    assert (state.request_event_id, state.payload_digest) == ("e-1", DIGEST)
    assert (state.tenant, state.session_id, state.variant) == ("acme", "s-1", "b")
    assert (state.max_rounds, state.config_version, state.attempts) == (3, 4, ())


@pytest.mark.parametrize(
    ("config_rounds", "request_rounds", "expected"),
    [(3, None, 3), (3, 1, 1), (3, 5, 5), (2, None, 2)],
)
def test_request_max_rounds_overrides_the_config(
    config_rounds: int, request_rounds: int | None, expected: int
) -> None:
    config = PipelineConfig(refine=RefinePolicy(max_rounds=config_rounds))
    state = begin(config, max_rounds=request_rounds)
    assert state.max_rounds == expected
    fails = scored(*[0.1] * (expected - 1))
    state, step = play(state, *fails, config=config)
    assert step.response is None
    state, step = play(state, verdict(expected, score=0.1), config=config)
    assert step.response is not None
    assert step.response.status == "failed"
    assert step.response.rounds == expected


def test_a_pass_at_round_one_finalizes() -> None:
    state, step = play(begin(), verdict(1, passed=True, score=0.9))
    response = step.response
    assert response is not None
    assert step.task is None
    assert state.done
    assert state.final == response
    assert response.event_id == stable_id("req-1", "response")
    assert (response.status, response.content, response.confidence) == (
        "passed",
        "answer of round 1",
        0.9,
    )
    assert (response.rounds, response.best_round) == (1, 1)
    assert (response.reason, response.reason_code) == (None, None)
    assert (response.tenant, response.session_id, response.variant) == ("acme", "s-1", "b")
    assert response.config_version == 4
    assert response.latency_ms == 1000.0


def test_a_fail_asks_again_with_the_critique_and_the_previous_attempt() -> None:
    shown = CONFIG.model_copy(
        update={"refine": CONFIG.refine.model_copy(update={"show_previous": True})}
    )
    state, step = play(begin(shown), verdict(1, score=0.4), config=shown)
    task = step.task
    assert task is not None
    assert step.response is None
    assert (task.round, task.task_id) == (2, "req-1/main/2")
    assert task.event_id == stable_id("req-1/main/2", "task")
    assert task.critique == "critique of round 1"
    assert task.previous_attempt == "answer of round 1"
    assert task.instruction == "How do I bake bread at home?"
    assert (task.answer_format, task.priority) == ("markdown", 7)
    assert state.round == 2
    assert state.current_task == task
    assert [a.round for a in state.attempts] == [1]


def test_without_critique_a_fail_asks_the_same_question_again_and_keeps_the_best() -> None:
    resampling = CONFIG.model_copy(
        update={"refine": CONFIG.refine.model_copy(update={"critique": False})}
    )
    _, step = play(begin(resampling), verdict(1, score=0.6), config=resampling)
    task = step.task
    assert task is not None
    assert (task.round, task.critique, task.previous_attempt) == (2, None, None)
    assert task.instruction == "How do I bake bread at home?"
    _, last = play(
        begin(resampling),
        verdict(1, score=0.6),
        verdict(2, score=0.4),
        verdict(3, score=0.5),
        config=resampling,
    )
    assert last.response is not None
    assert (last.response.rounds, last.response.best_round) == (3, 1)


def test_by_default_a_re_ask_is_the_question_with_the_critique_not_the_attempt() -> None:
    fresh = CONFIG
    assert not fresh.refine.show_previous
    _, step = play(begin(fresh), verdict(1, score=0.6), config=fresh)
    task = step.task
    assert task is not None
    assert (task.round, task.critique, task.previous_attempt) == (2, "critique of round 1", None)
    # A JSON format failure still shows the attempt: the constrained re-ask converts it.
    _, json_step = play(
        begin(fresh, answer_format="json"),
        verdict(1, score=0.6, failure_classes=("format",)),
        config=fresh,
    )
    assert json_step.task is not None
    assert json_step.task.output_constraint == "json"
    assert json_step.task.previous_attempt == "answer of round 1"


@pytest.mark.parametrize(
    ("classes", "reasked"),
    [
        pytest.param(("low_alignment",), False, id="soft-alignment"),
        pytest.param(("incomplete", "low_score"), False, id="soft-completeness"),
        pytest.param(("echo",), False, id="echo"),
        pytest.param(("constraint",), True, id="constraint"),
        pytest.param(("low_alignment", "format"), True, id="format-among-soft"),
        pytest.param(("pii",), True, id="safety"),
    ],
)
def test_re_asking_on_exact_failures_only_settles_a_soft_miss(
    classes: tuple[str, ...], reasked: bool
) -> None:
    exact = CONFIG.model_copy(
        update={"refine": CONFIG.refine.model_copy(update={"reask_on": "exact"})}
    )
    _, step = play(begin(exact), verdict(1, score=0.6, failure_classes=classes), config=exact)
    assert (step.task is not None) is reasked
    if not reasked:
        assert step.response is not None
        assert (step.response.status, step.response.rounds) == ("failed", 1)
        assert step.response.content == "answer of round 1"
    # The default re-asks every failure.
    _, default = play(begin(), verdict(1, score=0.6, failure_classes=classes))
    assert default.task is not None


def test_a_pass_at_round_two_finalizes_passed() -> None:
    _, step = play(begin(), verdict(1, score=0.4), verdict(2, passed=True, score=0.8))
    response = step.response
    assert response is not None
    assert (response.status, response.rounds, response.best_round) == ("passed", 2, 2)
    assert response.content == "answer of round 2"


def test_the_next_task_follows_the_current_config() -> None:
    newer = PipelineConfig(
        version=5,
        specialist=SpecialistProfile(temperature=0.5),
        refine=RefinePolicy(temperature_step=0.25),
    )
    state = begin()
    step = on_verdict(state, verdict(1), T0, newer)
    assert step.task is not None
    assert (step.task.config_version, step.task.temperature) == (5, 0.75)
    assert step.task.deployment == DEPLOYMENT


@pytest.mark.parametrize(
    ("base", "round_", "expected"), [(0.2, 1, 0.2), (0.2, 2, 0.5), (0.2, 3, 0.8), (0.8, 3, 1.0)]
)
def test_later_rounds_sample_wider_up_to_the_cap(base: float, round_: int, expected: float) -> None:
    assert round_temperature(base, round_, RefinePolicy()) == pytest.approx(expected)


def test_a_format_failure_of_a_json_answer_escalates_to_constrained_decoding() -> None:
    state = begin(answer_format="json")
    plain = on_verdict(state, verdict(1), T0, CONFIG)
    assert plain.task is not None
    assert plain.task.output_constraint is None
    step = on_verdict(state, verdict(1, failure_classes=("format",)), T0, CONFIG)
    assert step.task is not None
    assert step.task.output_constraint == "json"
    later = on_verdict(step.state, verdict(2), T0, CONFIG)
    assert later.task is not None
    assert later.task.output_constraint == "json", "once constrained, stays constrained"
    text = on_verdict(begin(), verdict(1, failure_classes=("format",)), T0, CONFIG)
    assert text.task is not None
    assert text.task.output_constraint is None


def test_never_passing_returns_the_best_attempt_not_the_last() -> None:
    _, step = play(begin(), *scored(0.5, 0.6, 0.4))
    response = step.response
    assert response is not None
    assert step.task is None
    assert (response.status, response.rounds, response.best_round) == ("failed", 3, 2)
    assert response.content == "answer of round 2"
    assert response.confidence == 0.6
    assert response.reason_code == "guardians_failed"
    assert response.reason is not None
    assert "critique of round 2" in response.reason


@pytest.mark.parametrize(
    ("scores", "best_round"),
    [
        pytest.param((0.5, 0.6, 0.4), 2, id="middle-best"),
        pytest.param((0.6, 0.6, 0.6), 1, id="all-tied-earliest"),
        pytest.param((0.3, 0.6, 0.6), 2, id="tie-prefers-earlier"),
        pytest.param((0.1, 0.2, 0.3), 3, id="last-best"),
        pytest.param((0.0, 0.0, 0.0), 1, id="all-zero"),
    ],
)
def test_the_best_attempt_is_the_highest_score_then_the_earliest(
    scores: tuple[float, ...], best_round: int
) -> None:
    state, step = play(begin(), *scored(*scores))
    assert step.response is not None
    assert step.response.best_round == best_round
    assert step.response.content == f"answer of round {best_round}"
    best = best_attempt(state.attempts)
    assert best is not None
    assert best.round == best_round


def test_a_passing_attempt_beats_a_higher_failing_score() -> None:
    state, _ = play(begin(), verdict(1, score=0.95), verdict(2, passed=True, score=0.7))
    best = best_attempt(state.attempts)
    assert best is not None
    assert best.round == 2


def test_more_constraints_met_beats_a_higher_score_among_failing_attempts() -> None:
    def met(share: float) -> tuple[GuardianScore, ...]:
        return (GuardianScore(guardian="constraints", score=share, passed=share == 1.0),)

    state, step = play(
        begin(),
        verdict(1, score=0.9, scores=met(0.5)),
        verdict(2, score=0.6, scores=met(1.0)),
        verdict(3, score=0.95),  # no constraints checked: counts as none failed
    )
    assert [a.constraints_met for a in state.attempts] == [0.5, 1.0, 1.0]
    assert step.response is not None
    assert step.response.best_round == 3
    best = best_attempt(state.attempts[:2])
    assert best is not None
    assert best.round == 2


def test_all_model_errors_finalize_as_error_with_no_content() -> None:
    _, step = play(begin(), model_error(1), model_error(2), model_error(3))
    response = step.response
    assert response is not None
    assert (response.status, response.content, response.confidence) == ("error", "", 0.0)
    assert (response.rounds, response.best_round) == (3, 0)
    assert response.reason_code == "model_error"


def test_a_model_error_is_never_the_best_attempt() -> None:
    _, step = play(begin(), model_error(1), verdict(2, score=0.2), model_error(3))
    assert step.response is not None
    assert (step.response.status, step.response.best_round) == ("failed", 2)
    assert step.response.content == "answer of round 2"


def test_after_a_model_error_the_retry_keeps_the_last_real_answer() -> None:
    _, step = play(begin(), model_error(1))
    assert step.task is not None
    assert step.task.previous_attempt is None
    assert step.task.critique == "The previous attempt failed; answer the question again."
    shown = CONFIG.model_copy(
        update={"refine": CONFIG.refine.model_copy(update={"show_previous": True})}
    )
    _, step = play(begin(shown), verdict(1, score=0.4), model_error(2), config=shown)
    assert step.task is not None
    assert step.task.round == 3
    assert step.task.previous_attempt == "answer of round 1"
    assert step.task.critique == "critique of round 1"


def test_the_final_response_sums_tokens_and_lists_models_and_specialists() -> None:
    _, step = play(
        begin(),
        verdict(1, model="qwen", specialist="general", prompt_tokens=10, completion_tokens=1),
        verdict(2, model="smollm2", specialist="chef", prompt_tokens=20, completion_tokens=2),
        verdict(3, model="qwen", specialist="general", prompt_tokens=30, completion_tokens=3),
    )
    response = step.response
    assert response is not None
    assert (response.prompt_tokens, response.completion_tokens) == (60, 6)
    assert response.models == ("qwen", "smollm2")
    assert response.specialists == ("chef", "general")
    assert response.latency_ms == 3000.0


def test_a_redelivered_verdict_re_emits_the_task_it_produced() -> None:
    first = verdict(1, score=0.4)
    state, step = play(begin(), first)
    again = on_verdict(state, first, T0 + timedelta(minutes=1), CONFIG)
    assert again.state == state
    assert again.task == step.task
    assert again.response is None


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param(verdict(1, score=0.9, event_id="v-1-rescored"), id="other-verdict-same-round"),
        pytest.param(verdict(1, passed=True, event_id="v-1-pass"), id="late-pass-same-round"),
        pytest.param(verdict(3, score=0.9), id="future-round"),
    ],
)
def test_a_verdict_for_a_counted_or_unassigned_round_is_ignored(stale: VerdictIssued) -> None:
    state, _ = play(begin(), verdict(1, score=0.4))
    step = on_verdict(state, stale, T0 + timedelta(minutes=1), CONFIG)
    assert step == Step(state=state)


def test_only_the_last_attempts_verdict_re_emits_the_task() -> None:
    state, _ = play(begin(), verdict(1, score=0.4), verdict(2, score=0.4))
    assert state.round == 3
    step = on_verdict(state, verdict(1, score=0.4), T0 + timedelta(minutes=1), CONFIG)
    assert step == Step(state=state)
    step = on_verdict(state, verdict(2, score=0.4), T0 + timedelta(minutes=1), CONFIG)
    assert step.task == state.current_task
    assert step.task is not None
    assert step.task.round == 3


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(verdict(1, passed=True, score=0.9), id="the-finalizing-verdict"),
        pytest.param(verdict(2, passed=True, score=1.0), id="a-later-round"),
        pytest.param(verdict(1, score=0.1, event_id="v-other"), id="another-verdict"),
    ],
)
def test_a_verdict_after_finalization_re_emits_the_same_response(late: VerdictIssued) -> None:
    state, step = play(begin(), verdict(1, passed=True, score=0.9))
    again = on_verdict(state, late, T0 + timedelta(hours=1), CONFIG)
    assert again.state == state
    assert again.task is None
    assert again.response == step.response


def test_before_the_deadline_nothing_happens() -> None:
    state, _ = play(begin(), verdict(1, score=0.4))
    step = on_deadline(state, T0 + timedelta(seconds=119, milliseconds=999))
    assert step == Step(state=state)


@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(seconds=5)])
def test_at_or_after_the_deadline_the_best_attempt_is_returned(late_by: timedelta) -> None:
    state, _ = play(begin(), verdict(1, score=0.6), verdict(2, score=0.3))
    now = state.deadline_at + late_by
    step = on_deadline(state, now)
    response = step.response
    assert response is not None
    assert step.state.done
    assert (response.status, response.content, response.best_round) == (
        "timeout",
        "answer of round 1",
        1,
    )
    assert (response.rounds, response.confidence) == (2, 0.6)
    assert response.reason_code == "deadline"
    assert response.occurred_at == now


def test_a_timeout_with_no_answer_has_no_content() -> None:
    state = begin(deadline_at=T0 + timedelta(seconds=10))
    step = on_deadline(state, T0 + timedelta(seconds=10))
    assert step.response is not None
    assert (step.response.status, step.response.content) == ("timeout", "")
    assert (step.response.rounds, step.response.best_round) == (0, 0)


def test_a_finished_request_ignores_the_deadline_and_late_verdicts() -> None:
    state, step = play(begin(), verdict(1, passed=True, score=0.9))
    later = on_deadline(state, T0 + timedelta(days=1))
    assert later.response == step.response
    assert later.state == state
    timed_out = on_deadline(begin(), T0 + timedelta(days=1))
    late = on_verdict(timed_out.state, verdict(1, passed=True), T0 + timedelta(days=2), CONFIG)
    assert late.response == timed_out.response
    assert late.response is not None
    assert late.response.status == "timeout"


def test_rejected_is_the_one_final_response() -> None:
    request = submitted()
    now = T0 + timedelta(milliseconds=250)
    response = rejected(request, "bad_tenant", "tenant 'X' is not valid", now, 4)
    assert response.event_id == stable_id("req-1", "response")
    assert (response.status, response.reason_code) == ("rejected", "bad_tenant")
    assert response.reason == "tenant 'X' is not valid"
    assert (response.content, response.rounds, response.latency_ms) == ("", 0, 250.0)
    assert (response.tenant, response.session_id, response.variant) == ("acme", "s-1", "b")
    assert (response.config_version, response.occurred_at) == (4, now)


def test_a_closed_request_answers_every_later_event_with_its_rejection() -> None:
    request = submitted()
    response = rejected(request, "prompt_injection", "no", T0, 4)
    state = closed(request, DIGEST, response)
    assert state.done
    assert state.final == response
    assert (state.payload_digest, state.request_event_id, state.max_rounds) == (DIGEST, "e-1", 0)
    step = on_verdict(state, verdict(1, passed=True), T0 + timedelta(seconds=1), CONFIG)
    assert step == Step(state=state, response=response)
    assert on_deadline(state, T0 + timedelta(days=1)) == Step(state=state, response=response)


def test_the_same_inputs_give_the_same_events() -> None:
    runs = [play(begin(), *scored(0.5, 0.6, 0.4)) for _ in range(2)]
    assert runs[0] == runs[1]


def test_content_that_failed_the_safety_gate_is_never_returned() -> None:
    unsafe = verdict(1, score=0.9, failure_classes=("pii",))
    state, step = play(begin(), unsafe, verdict(2, score=0.4), verdict(3, score=0.5))
    assert step.response is not None
    assert (step.response.best_round, step.response.content) == (3, "answer of round 3")
    assert [a.unsafe for a in state.attempts] == [("pii",), (), ()]

    _, only = play(
        begin(),
        verdict(1, score=0.9, failure_classes=("leak",)),
        verdict(2, score=0.8, failure_classes=("pii",)),
        verdict(3, score=0.7, failure_classes=("refusal",)),
    )
    assert only.response is not None
    assert only.response.best_round == 3, "a refusal is safe to return"
    _, none_safe = play(
        begin(),
        *(verdict(r, score=0.5, failure_classes=("leak",)) for r in (1, 2, 3)),
    )
    response = none_safe.response
    assert response is not None
    assert (response.status, response.content, response.best_round) == ("failed", "", 1)
    assert response.reason is not None
    assert "failed the safety gate (leak) and is withheld" in response.reason
