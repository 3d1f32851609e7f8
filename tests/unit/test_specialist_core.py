"""The specialist's record of one model call: a completion or a typed failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import agents.errors
from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelNotAllowed,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.ids import stable_id
from agents.ports import Completion
from agents.specialist import answered
from schemas.request_events import TaskAssigned

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=3)
DEPLOYMENT = "smollm2-cpu"
TASK = TaskAssigned(
    event_id="t-2",
    request_id="req-1",
    occurred_at=T0,
    config_version=4,
    variant="b",
    task_id="req-1/main/2",
    round=2,
    specialist="general",
    deployment=DEPLOYMENT,
    instruction="How do I bake bread at home?",
    system_prompt="You are a careful assistant.",
    prompt_version="v3",
    critique="Too short.",
    previous_attempt="Bake it.",
    answer_format="markdown",
)
COMPLETION = Completion(
    content="Mix, knead, rise, bake.",
    model="smollm2-360m-q8",
    prompt_tokens=88,
    completion_tokens=12,
    finish_reason="stop",
)


def test_a_completion_is_an_ok_answer() -> None:
    event = answered(TASK, COMPLETION, deployment=DEPLOYMENT, latency_ms=812.5, attempts=1, now=NOW)
    assert (event.status, event.content, event.model) == (
        "ok",
        COMPLETION.content,
        COMPLETION.model,
    )
    assert (event.prompt_tokens, event.completion_tokens, event.finish_reason) == (88, 12, "stop")
    assert (event.error_kind, event.error_message) == (None, None)
    assert (event.latency_ms, event.attempts, event.occurred_at) == (812.5, 1, NOW)


def test_the_answer_carries_the_task() -> None:
    event = answered(TASK, COMPLETION, deployment="gpu-pool", latency_ms=1.0, attempts=1, now=NOW)
    assert (event.request_id, event.task_id, event.subtask, event.round) == (
        "req-1",
        "req-1/main/2",
        "main",
        2,
    )
    assert (event.config_version, event.variant, event.specialist) == (4, "b", "general")
    assert (event.instruction, event.system_prompt) == (TASK.instruction, TASK.system_prompt)
    assert (event.answer_format, event.prompt_version) == ("markdown", "v3")
    assert event.deployment == "gpu-pool"


def test_the_event_id_is_stable_per_task_and_attempt() -> None:
    def event_id(attempts: int, now: datetime) -> str:
        return answered(
            TASK, COMPLETION, deployment=DEPLOYMENT, latency_ms=1.0, attempts=attempts, now=now
        ).event_id

    assert event_id(2, NOW) == stable_id("t-2", "answer", 2) == event_id(2, NOW + timedelta(days=1))
    assert event_id(1, NOW) != event_id(2, NOW)


ERRORS = [
    pytest.param(ModelError("boom"), "model_error", id="model-error"),
    pytest.param(ModelTimeout("no answer in 30 s"), "timeout", id="timeout"),
    pytest.param(ModelRateLimited("429", retry_after_s=2.0), "rate_limited", id="rate-limited"),
    pytest.param(ModelUnavailable("connection refused"), "unavailable", id="unavailable"),
    pytest.param(ModelBadResponse("no choices"), "bad_response", id="bad-response"),
    pytest.param(ModelRejected("400 context too long"), "rejected", id="rejected"),
    pytest.param(ModelNotAllowed("audit replay"), "not_allowed", id="not-allowed"),
]


@pytest.mark.parametrize(("error", "kind"), ERRORS)
def test_a_model_error_is_a_failed_answer(error: ModelError, kind: str) -> None:
    event = answered(TASK, error, deployment=DEPLOYMENT, latency_ms=30000.0, attempts=3, now=NOW)
    assert error.kind == kind
    assert (event.status, event.error_kind, event.error_message) == ("failed", kind, str(error))
    assert (event.content, event.model, event.finish_reason) == ("", DEPLOYMENT, None)
    assert (event.prompt_tokens, event.completion_tokens) == (0, 0)
    assert (event.latency_ms, event.attempts) == (30000.0, 3)


def test_the_table_covers_every_model_error() -> None:
    def family(cls: type[ModelError]) -> set[type[ModelError]]:
        return {cls}.union(*(family(sub) for sub in cls.__subclasses__()))

    ours = {cls for cls in family(ModelError) if cls.__module__ == agents.errors.__name__}
    assert {type(param.values[0]) for param in ERRORS} == ours


def test_a_long_error_message_is_cut_to_500_characters() -> None:
    error = ModelBadResponse("x" * 2000)
    event = answered(TASK, error, deployment=DEPLOYMENT, latency_ms=1.0, attempts=1, now=NOW)
    assert event.error_message == "x" * 500
