"""The refinement loop as a state machine over one request: start, verdict, deadline.

Pure: the stage passes the state, the event and the time in, and emits what
comes back. Every emitted event has a deterministic id, so a re-emission after
a crash is the same event, and a finished request only ever re-emits its one
final response.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agents.config import PipelineConfig, RefinePolicy
from agents.ids import stable_id, task_id
from schemas.envelope import Millis
from schemas.request_events import (
    RequestSubmitted,
    ResponseDelivered,
    ResponseStatus,
    TaskAssigned,
    VerdictIssued,
)


class Attempt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    round: int
    passed: bool
    score: float
    content: str
    ok: bool
    specialist: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    verdict_event_id: str
    critique: str = ""


class RequestState(BaseModel):
    """What the loop remembers about one request (the refinement table's value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    request_event_id: str
    payload_digest: str
    submitted_at: Millis
    deadline_at: Millis
    max_rounds: int
    tenant: str
    session_id: str | None
    variant: str | None = None
    config_version: int
    round: int = 0
    current_task: TaskAssigned | None = None
    attempts: tuple[Attempt, ...] = ()
    final: ResponseDelivered | None = None

    @property
    def done(self) -> bool:
        return self.final is not None


@dataclass(frozen=True)
class Step:
    """The new state and what to emit (nothing, a task, or the final response)."""

    state: RequestState
    task: TaskAssigned | None = None
    response: ResponseDelivered | None = None


def start(
    request: RequestSubmitted,
    digest: str,
    now: datetime,
    config: PipelineConfig,
    *,
    deployment: str,
    degraded_route: bool = False,
) -> Step:
    """Accept a validated request: record it and assign round 1 to ``deployment``
    (``degraded_route``: it was chosen although none was healthy)."""
    timeout = timedelta(seconds=config.refine.default_timeout_s)
    state = RequestState(
        request_id=request.request_id,
        request_event_id=request.event_id,
        payload_digest=digest,
        submitted_at=request.occurred_at,
        deadline_at=request.deadline_at or (now + timeout),
        max_rounds=request.max_rounds or config.refine.max_rounds,
        tenant=request.tenant,
        session_id=request.session_id,
        variant=request.variant,
        config_version=config.version,
    )
    task = _task(state, request, 1, now, config, deployment=deployment)
    if degraded_route:
        task = task.model_copy(update={"degraded_route": True})
    return Step(state=state.model_copy(update={"round": 1, "current_task": task}), task=task)


def _task(
    state: RequestState,
    request: RequestSubmitted | TaskAssigned,
    round_: int,
    now: datetime,
    config: PipelineConfig,
    *,
    deployment: str,
    critique: str | None = None,
    previous: str | None = None,
    constraint: str | None = None,
) -> TaskAssigned:
    profile = config.specialist
    tid = task_id(state.request_id, "main", round_)
    instruction = request.prompt if isinstance(request, RequestSubmitted) else request.instruction
    return TaskAssigned(
        event_id=stable_id(tid, "task"),
        request_id=state.request_id,
        occurred_at=now,
        config_version=config.version,
        variant=state.variant,
        task_id=tid,
        round=round_,
        specialist=profile.name,
        deployment=deployment,
        instruction=instruction,
        system_prompt=profile.system_prompt,
        prompt_version=profile.prompt_version,
        critique=critique,
        previous_attempt=previous,
        temperature=round_temperature(profile.temperature, round_, config.refine),
        max_tokens=profile.max_tokens,
        answer_format=request.answer_format,
        priority=request.priority,
        deadline_at=state.deadline_at,
        output_constraint=constraint,
    )


def round_temperature(base: float, round_: int, policy: RefinePolicy) -> float:
    """Later rounds sample wider: a re-ask at the same temperature tends to repeat itself."""
    return min(policy.max_temperature, base + policy.temperature_step * (round_ - 1))


def on_verdict(
    state: RequestState, verdict: VerdictIssued, now: datetime, config: PipelineConfig
) -> Step:
    """Record a verdict; re-ask with the critique, or finalize with the best attempt."""
    if state.done:
        return Step(state=state, response=state.final)
    if verdict.round != state.round or any(a.round == verdict.round for a in state.attempts):
        return _duplicate(state, verdict)
    state = state.model_copy(update={"attempts": (*state.attempts, _attempt(verdict))})
    if verdict.passed or state.round >= state.max_rounds:
        return _finalize(state, now, "passed" if verdict.passed else "failed")
    assert state.current_task is not None
    previous = verdict.content if verdict.content else state.current_task.previous_attempt
    task = _task(
        state,
        state.current_task,
        state.round + 1,
        now,
        config,
        deployment=state.current_task.deployment,
        critique=verdict.critique
        or state.current_task.critique
        or "The previous attempt failed; answer the question again.",
        previous=previous,
        constraint=_constraint(state.current_task, verdict),
    )
    return Step(
        state=state.model_copy(update={"round": state.round + 1, "current_task": task}), task=task
    )


def _constraint(task: TaskAssigned, verdict: VerdictIssued) -> str | None:
    """Escalate to constrained JSON decoding once a JSON answer failed on its format."""
    if task.output_constraint is not None:
        return task.output_constraint
    if task.answer_format == "json" and "format" in verdict.failure_classes:
        return "json"
    return None


def _duplicate(state: RequestState, verdict: VerdictIssued) -> Step:
    """A verdict already counted. Re-emit the current task only when it is the very
    verdict that produced it (a redelivery after a crash may have lost that send)."""
    last = state.attempts[-1] if state.attempts else None
    if last is not None and last.verdict_event_id == verdict.event_id:
        return Step(state=state, task=state.current_task)
    return Step(state=state)


def on_deadline(state: RequestState, now: datetime) -> Step:
    if state.done or now < state.deadline_at:
        return Step(state=state, response=state.final)
    return _finalize(state, now, "timeout")


def _attempt(v: VerdictIssued) -> Attempt:
    return Attempt(
        round=v.round,
        passed=v.passed,
        score=v.score,
        content=v.content,
        ok="model_error" not in v.failure_classes,
        specialist=v.specialist,
        model=v.model,
        prompt_tokens=v.prompt_tokens,
        completion_tokens=v.completion_tokens,
        verdict_event_id=v.event_id,
        critique=v.critique,
    )


def best_attempt(attempts: tuple[Attempt, ...]) -> Attempt | None:
    """Passing beats failing, then the higher score, then the earlier round."""
    usable = [a for a in attempts if a.ok]
    if not usable:
        return None
    return max(usable, key=lambda a: (a.passed, a.score, -a.round))


def _finalize(state: RequestState, now: datetime, status: ResponseStatus) -> Step:
    best = best_attempt(state.attempts)
    if best is None and status != "timeout":
        status = "error"
    reason, code = _reason(status, best)
    response = ResponseDelivered(
        event_id=stable_id(state.request_id, "response"),
        request_id=state.request_id,
        occurred_at=now,
        config_version=state.config_version,
        variant=state.variant,
        status=status,
        content=best.content if best else "",
        confidence=best.score if best else 0.0,
        rounds=len(state.attempts),
        best_round=best.round if best else 0,
        reason=reason,
        reason_code=code,
        specialists=tuple(sorted({a.specialist for a in state.attempts if a.specialist})),
        models=tuple(sorted({a.model for a in state.attempts if a.model})),
        prompt_tokens=sum(a.prompt_tokens for a in state.attempts),
        completion_tokens=sum(a.completion_tokens for a in state.attempts),
        latency_ms=max(0.0, (now - state.submitted_at).total_seconds() * 1000),
        tenant=state.tenant,
        session_id=state.session_id,
    )
    return Step(state=state.model_copy(update={"final": response}), response=response)


def _reason(status: ResponseStatus, best: Attempt | None) -> tuple[str | None, str | None]:
    if status == "passed":
        return None, None
    if status == "timeout":
        return "the deadline passed; returning the best attempt so far", "deadline"
    if status == "error":
        return "no specialist produced an answer", "model_error"
    critique = best.critique if best else ""
    return f"no attempt passed the guardians: {critique}".strip(), "guardians_failed"


def rejected(
    request: RequestSubmitted, code: str, reason: str, now: datetime, config_version: int
) -> ResponseDelivered:
    """The one final response of a request intake refused."""
    return ResponseDelivered(
        event_id=stable_id(request.request_id, "response"),
        request_id=request.request_id,
        occurred_at=now,
        config_version=config_version,
        variant=request.variant,
        status="rejected",
        reason=reason,
        reason_code=code,
        latency_ms=max(0.0, (now - request.occurred_at).total_seconds() * 1000),
        tenant=request.tenant,
        session_id=request.session_id,
    )


def closed(request: RequestSubmitted, digest: str, response: ResponseDelivered) -> RequestState:
    """The state of a request answered at intake (rejected): resends get the same answer."""
    return RequestState(
        request_id=request.request_id,
        request_event_id=request.event_id,
        payload_digest=digest,
        submitted_at=request.occurred_at,
        deadline_at=response.occurred_at,
        max_rounds=0,
        tenant=request.tenant,
        session_id=request.session_id,
        variant=request.variant,
        config_version=response.config_version,
        final=response,
    )
