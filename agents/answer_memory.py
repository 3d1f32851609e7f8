"""The specialist's memory of the answers it recorded: by request, each task's answer by
the task's event id, so a redelivered or re-sent task is answered again with the very
same event and no model call. Pure: the stage passes the time and its index in."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agents.retention import due
from schemas.request_events import SpecialistAnswered, TaskAssigned


class RecordedAnswers(BaseModel):
    """The answers recorded for one request's tasks, by task event id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recorded_at: datetime
    """When the last answer was recorded: the entry's retention counts from here."""
    answers: dict[str, SpecialistAnswered]


def recorded(entry: RecordedAnswers | None, task: TaskAssigned) -> SpecialistAnswered | None:
    """The answer recorded for ``task`` (None: it was never answered here)."""
    if entry is None:
        return None
    return entry.answers.get(task.event_id)


def with_answer(
    entry: RecordedAnswers | None, task: TaskAssigned, answer: SpecialistAnswered, now: datetime
) -> RecordedAnswers:
    """``entry`` with ``answer`` recorded for ``task``; an answer already recorded for it
    stays (the first one is the one every copy of the task re-emits)."""
    answers = dict(entry.answers) if entry is not None else {}
    answers.setdefault(task.event_id, answer)
    return RecordedAnswers(recorded_at=now, answers=answers)


def expired(
    recorded_at: Mapping[str, datetime], now: datetime, retain: timedelta, cap: int
) -> list[str]:
    """Requests whose entry leaves the store now: recorded longer than ``retain`` ago, then
    the oldest of the rest beyond ``cap`` entries."""
    old = due(recorded_at, now, retain)
    excess = len(recorded_at) - len(old) - cap
    if excess <= 0:
        return old
    gone = set(old)
    rest = sorted((at, key) for key, at in recorded_at.items() if key not in gone)
    return old + [key for _, key in rest[:excess]]
