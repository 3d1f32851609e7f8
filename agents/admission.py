"""Intake's decisions, pure: what a submitted request, or the session context it waited
for, leads to. ``streams/intake.py`` applies the effects; replay calls the same
functions with facts taken from the log.

A new, valid request is decided in two steps, because between them the stage asks the
outside world: ``on_request`` admits it, the stage looks its answer up in the cache,
then ``begin`` answers it from the cache or plans it, routing each subtask with the
``route`` it is given (the balancer live, the recorded choice in replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agents.config import PipelineConfig
from agents.effects import NOTHING, Effects, Refused, answer_turns, prompt_turn, sent
from agents.experiment_plan import config_for, variant_for
from agents.ids import stable_id
from agents.intake import RejectCode, validate
from agents.refine import RequestState, awaiting_context, closed, rejected, start
from agents.retention import DoneMarker, answer_for
from agents.router import route_request
from schemas.request_events import ContextProvided, RequestSubmitted, ResponseDelivered

Route = tuple[str, bool]
"""(deployment, whether it is a degraded choice)."""
Router = Callable[[str], Route]
"""Picks the deployment of a subtask, by its name."""


@dataclass(frozen=True)
class Admitted:
    """A new, valid request to answer or plan (its experiment arm already chosen)."""

    request: RequestSubmitted
    digest: str
    context: tuple[str, ...] = ()


def on_request(
    request: RequestSubmitted,
    digest: str,
    known: RequestState | None,
    marker: DoneMarker | None,
    now: datetime,
    config: PipelineConfig,
) -> Effects | Admitted:
    """A submitted request: a resend of a known one, a rejection, a session request held
    for its context, or admitted."""
    if known is not None:
        return resent(request, digest, known, now, config.version)
    if marker is not None:
        response = answer_for(marker, digest)
        if response is None:
            return conflict(request, now, config.version)
        return Effects(emits=(response,))
    rejection = validate(request, now, config.intake)
    if rejection is not None:
        response = rejected(request, rejection.code.value, rejection.reason, now, config.version)
        state = closed(request, digest, response)
        return Effects(state=state, emits=(response,), decided=response, then=sent(state))
    variant = variant_for(config, request.request_id)
    if variant is not None:
        request = request.model_copy(update={"variant": variant})
    if request.session_id is not None:
        # Planned once the context maintainer gives the session's earlier turns.
        return Effects(
            state=awaiting_context(request, digest, now, config),
            turns=(prompt_turn(request, now, config.version),),
        )
    return Admitted(request, digest, request.context)


def begin(
    admitted: Admitted,
    now: datetime,
    config: PipelineConfig,
    *,
    cache_hit: ResponseDelivered | None,
    route: Router,
) -> Effects:
    """Answer an admitted request from the cache, else plan it and assign its first tasks."""
    request, digest = admitted.request, admitted.digest
    if cache_hit is not None:
        state = closed(request, digest, cache_hit)
        return Effects(
            state=state,
            turns=answer_turns(state, cache_hit),
            emits=(cache_hit,),
            decided=cache_hit,
            then=sent(state),
            cache_hit=True,
        )
    arm = config_for(config, request.variant)
    plan = route_request(request.prompt, admitted.context, decompose=arm.routing.decompose)
    routes = {s.subtask: route(s.subtask) for s in plan.subtasks}
    deployment, degraded = routes[plan.subtasks[0].subtask]
    step = start(
        request,
        digest,
        now,
        arm,
        deployment=deployment,
        degraded_route=degraded,
        plan=plan,
        routes=routes,
    )
    return Effects(state=step.state, emits=step.tasks, decomposed=not step.state.single)


def on_context(
    provided: ContextProvided, known: RequestState | None, marker: DoneMarker | None
) -> Effects | Admitted | Refused:
    """The session context of a request held for it: plan the request now, unless it was
    answered already (then its one answer again) or planned already."""
    if known is None:
        if marker is None:
            return Refused("unknown_request", f"no request state for {provided.request_id}")
        return NOTHING  # answered long ago, and its answer acknowledged
    if known.final is not None:
        # Answered already (or timed out waiting): the same answer, never a second one,
        # and nothing at all once the broker has it.
        return NOTHING if known.final_sent else again(known, known.final)
    if known.awaiting is not None:
        # The session's turns come first: the client's own context continues from them.
        context = provided.context + known.awaiting.context
        return Admitted(known.awaiting, known.payload_digest, context)
    if known.unanswered:
        # Planned, but nothing answered yet: a crash may have lost the first tasks.
        return Effects(emits=known.open_tasks)
    return NOTHING


def resent(
    request: RequestSubmitted, digest: str, known: RequestState, now: datetime, version: int
) -> Effects:
    """A request id seen before: same payload gets the same answer, another is a conflict."""
    if known.payload_digest != digest:
        return conflict(request, now, version)
    same_record = known.request_event_id == request.event_id
    if known.final is not None:
        if same_record and known.final_sent:
            return NOTHING  # the very record again, and its answer acknowledged already
        return again(known, known.final)  # a resend by its client: the same answer
    if same_record and known.awaiting is not None:
        # The same prompt turn again: the context maintainer counts it once.
        return Effects(turns=(prompt_turn(known.awaiting, now, version),))
    if same_record and known.open_tasks:
        # The very record again (redelivered after a crash): the task sends may be lost.
        return Effects(emits=known.open_tasks)
    return NOTHING  # resent while in progress: its answer will follow


def again(state: RequestState, response: ResponseDelivered) -> Effects:
    """A finished request's one final response, sent again (its session turn first)."""
    return Effects(turns=answer_turns(state, response), emits=(response,), then=sent(state))


def conflict(request: RequestSubmitted, now: datetime, version: int) -> Effects:
    """A resend of a known request id with another payload: a rejection addressed to that
    submission alone (not a dead letter: its sender is waiting for an answer). The
    request itself is untouched (no state, no session turn, no cache) and keeps its one
    final answer; a redelivered resend gets the same rejection, with the same event id."""
    response = ResponseDelivered(
        event_id=stable_id(request.request_id, "conflict", request.event_id),
        request_id=request.request_id,
        occurred_at=now,
        config_version=version,
        variant=request.variant,
        status="rejected",
        reason=(
            f"request {request.request_id} was already submitted with a different payload; "
            "this submission is not processed (resend it with a new request id)"
        ),
        reason_code=RejectCode.CONFLICT.value,
        latency_ms=max(0.0, (now - request.occurred_at).total_seconds() * 1000),
        tenant=request.tenant,
        session_id=request.session_id,
        submission_id=request.event_id,
    )
    return Effects(emits=(response,), decided=response)
