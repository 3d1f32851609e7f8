"""Events of the request path: request, task, answer, verdict, response, dead letter, feedback."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Event, Millis

AnswerFormat = Literal["text", "json", "markdown"]
ResponseStatus = Literal["passed", "failed", "rejected", "timeout", "error"]


class Constraint(BaseModel):
    """One exactly checkable requirement on an answer, as the contract carries it
    (``agents.constraints`` checks it; docs/constraints.md lists the kinds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    relation: str = "exactly"
    count: int = 0
    text: str = ""
    json_schema: str | None = None
    source: str = "client"


class RequestSubmitted(Event):
    prompt: str
    tenant: str = "default"
    session_id: str | None = None
    priority: int = 5
    deadline_at: Millis | None = None
    max_rounds: int | None = None
    answer_format: str = "text"
    client_id: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: str | None = None
    context: tuple[str, ...] = ()
    """Earlier turns the client holds, oldest first (``System: ...``, ``User: ...``)."""


class TaskAssigned(Event):
    task_id: str
    subtask: str = "main"
    round: int
    specialist: str
    deployment: str
    instruction: str
    system_prompt: str
    prompt_version: str = "v1"
    context: tuple[str, ...] = ()
    critique: str | None = None
    previous_attempt: str | None = None
    temperature: float = 0.2
    max_tokens: int = 256
    answer_format: str = "text"
    priority: int = 5
    deadline_at: Millis | None = None
    output_constraint: str | None = None
    task_class: str = ""
    complexity_level: str = ""
    complexity_score: float = 0.0
    depends_on: tuple[str, ...] = ()
    degraded_route: bool = False
    constraints: tuple[Constraint, ...] = ()
    reasked_for: tuple[str, ...] = ()


class Passage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    text: str
    score: float


class SpecialistAnswered(Event):
    task_id: str
    subtask: str = "main"
    round: int
    specialist: str
    deployment: str
    model: str
    instruction: str = ""
    system_prompt: str = ""
    answer_format: str = "text"
    prompt_version: str = "v1"
    status: Literal["ok", "failed"]
    content: str = ""
    error_kind: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None
    passages: tuple[Passage, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    task_class: str = ""
    reasked_for: tuple[str, ...] = ()


class GuardianScore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    guardian: str
    score: float
    passed: bool
    detail: str = ""


class VerdictIssued(Event):
    task_id: str
    subtask: str = "main"
    round: int
    answer_event_id: str
    passed: bool
    score: float
    threshold: float
    scores: tuple[GuardianScore, ...] = ()
    critique: str = ""
    failure_classes: tuple[str, ...] = ()
    specialist: str = ""
    deployment: str = ""
    model: str = ""
    content: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    guardian_version: str = "v1"
    prompt_version: str = ""
    task_class: str = ""
    answer_format: str = "text"
    reasked_for: tuple[str, ...] = ()


class ResponseDelivered(Event):
    status: ResponseStatus
    content: str = ""
    confidence: float = 0.0
    rounds: int = 0
    best_round: int = 0
    reason: str | None = None
    reason_code: str | None = None
    specialists: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cache_hit: bool = False
    tenant: str = "default"
    session_id: str | None = None
    cached_from: str | None = None
    submission_id: str | None = None
    """The RequestSubmitted this answers when it is not the request's own accepted
    submission (a conflicting resend's rejection): never the request's final answer."""

    @property
    def is_final(self) -> bool:
        """Whether this is the request's final answer (not a reply to another submission)."""
        return self.submission_id is None


class DeadLettered(Event):
    stage: str
    error_class: str
    reason_code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    payload: bytes
    payload_truncated: bool = False


class DeadlinePassed(Event):
    deadline_at: Millis


class FeedbackGiven(Event):
    kind: Literal["explicit", "implicit"]
    rating: float | None = None
    signal: str | None = None
    comment: str | None = None
    user_id: str | None = None


class SessionTurn(Event):
    """Keyed by ``session_id``; ``request_id`` is the request the turn belongs to."""

    session_id: str
    role: Literal["user", "assistant"]
    content: str
    status: str | None = None
    tenant: str = "default"


class ContextProvided(Event):
    session_id: str
    context: tuple[str, ...] = ()
    turns: int = 0
    dropped: int = 0
