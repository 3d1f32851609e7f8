"""The specialist's record of one model call: an answer or a typed failure, with the
passages the model was given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agents.errors import ModelError
from agents.ids import stable_id
from agents.ports import Completion
from schemas.request_events import Passage, SpecialistAnswered, TaskAssigned


def answered(
    task: TaskAssigned,
    outcome: Completion | ModelError,
    *,
    deployment: str,
    latency_ms: float,
    attempts: int,
    now: datetime,
    passages: Sequence[Passage] = (),
) -> SpecialistAnswered:
    """``SpecialistAnswered`` for ``task``: content and usage, or the error's kind; and
    the retrieved ``passages`` either way (what the model was shown)."""
    common = {
        "event_id": stable_id(task.event_id, "answer", attempts),
        "request_id": task.request_id,
        "occurred_at": now,
        "config_version": task.config_version,
        "variant": task.variant,
        "task_id": task.task_id,
        "subtask": task.subtask,
        "round": task.round,
        "specialist": task.specialist,
        "deployment": deployment,
        "instruction": task.instruction,
        "system_prompt": task.system_prompt,
        "answer_format": task.answer_format,
        "prompt_version": task.prompt_version,
        "latency_ms": latency_ms,
        "attempts": attempts,
        "passages": tuple(passages),
        "constraints": task.constraints,
        "task_class": task.task_class,
        "reasked_for": task.reasked_for,
    }
    if isinstance(outcome, ModelError):
        return SpecialistAnswered(
            **common,
            model=deployment,
            status="failed",
            error_kind=outcome.kind,
            error_message=str(outcome)[:500],
        )
    return SpecialistAnswered(
        **common,
        model=outcome.model,
        status="ok",
        content=outcome.content,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        finish_reason=outcome.finish_reason,
    )
