"""intake_stage: decode, co-locate, dedupe, validate, answer from the cache, or plan the
request (route and decompose it) and assign its first tasks; or reject it. A session
request first asks the context maintainer for its session's turns and is planned when
``ContextProvided`` comes back (on the contexts topic, which this stage also reads)."""

from __future__ import annotations

import logging

from agents import refine
from agents.experiment_plan import config_for, variant_for
from agents.intake import RejectCode, payload_digest, validate
from agents.retention import answer_for
from agents.router import route_request
from connectors.kafka import partition_for
from schemas import topics
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import ContextProvided, RequestSubmitted
from streams import answer_cache, sessions
from streams.refine_table import load_marker, load_state, save_state
from streams.routing import choose
from streams.runtime import Runtime
from streams.stage import Record, StageError, run

_log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    source = rt.sources(topics.REQUESTS, topics.CONTEXTS)

    @rt.app.agent(source, name="intake_stage")
    async def intake_stage(stream: object) -> None:
        await run(rt, "intake", stream, lambda record: handle(rt, record))


async def handle(rt: Runtime, record: Record) -> None:
    event = rt.codec.decode_any(record.value)
    if isinstance(event, ContextProvided):
        await with_context(rt, event)
        return
    if not isinstance(event, RequestSubmitted):
        raise DecodeError(DecodeReason.WRONG_RECORD, f"intake does not take {event.record_name}")
    request = event
    home = partition_for(request.request_id.encode(), rt.partitions)
    if record.partition != home:
        # Produced with another partitioner: move it where its request_id's other
        # events (and its table entry) live, then handle it there.
        await rt.topic(topics.REQUESTS).send(
            key=request.request_id.encode(), value=record.value, partition=home
        )
        return
    digest = payload_digest(request)
    known = load_state(rt, request.request_id)
    if known is not None:
        await _resent(rt, request, digest, known)
        return
    if await _resent_after_expiry(rt, request, digest):
        return
    now = rt.clock()
    rejection = validate(request, now, rt.config.intake)
    if rejection is not None:
        response = refine.rejected(
            request, rejection.code.value, rejection.reason, now, rt.config.version
        )
        save_state(rt, refine.closed(request, digest, response))
        await rt.emit(response)
        rt.count_response(response)
        return
    variant = variant_for(rt.config, request.request_id)
    if variant is not None:
        request = request.model_copy(update={"variant": variant})
    if request.session_id is not None:
        # Planned once the context maintainer gives the session's earlier turns.
        save_state(rt, refine.awaiting_context(request, digest, now, rt.config))
        await sessions.send_prompt(rt, request)
        return
    await answer_or_begin(rt, request, digest, ())


async def with_context(rt: Runtime, provided: ContextProvided) -> None:
    """The session context of a request held for it: now plan the request."""
    state = load_state(rt, provided.request_id)
    if state is None:
        marker = load_marker(rt, provided.request_id)
        if marker is None:
            raise StageError("unknown_request", f"no request state for {provided.request_id}")
        await rt.emit(marker.response)  # answered long ago: the same answer again
        return
    if state.final is not None:
        # Answered already (or timed out waiting): the same answer, never a second one.
        await sessions.send_answer(rt, state, state.final)
        await rt.emit(state.final)
    elif state.awaiting is not None:
        await answer_or_begin(rt, state.awaiting, state.payload_digest, provided.context)
    elif state.unanswered:
        # Planned, but nothing answered yet: a crash may have lost the first tasks.
        for task in state.open_tasks:
            await rt.emit(task)


async def answer_or_begin(
    rt: Runtime, request: RequestSubmitted, digest: str, context: tuple[str, ...]
) -> None:
    """Answer from the cache of approved answers, else plan and begin the request."""
    hit = await answer_cache.lookup(rt, request, context)
    if hit is not None:
        state = refine.closed(request, digest, hit)
        await sessions.send_answer(rt, state, hit)
        save_state(rt, state)
        await rt.emit(hit)
        rt.metrics.cache_hits.inc()
        rt.count_response(hit)
        return
    await begin(rt, request, digest, context)


async def begin(
    rt: Runtime, request: RequestSubmitted, digest: str, context: tuple[str, ...]
) -> None:
    """Plan the request, pick a deployment per subtask, and assign the first tasks."""
    config = config_for(rt.config, request.variant)
    plan = route_request(request.prompt, context, decompose=config.routing.decompose)
    routes = {s.subtask: choose(rt, request.request_id, s.subtask) for s in plan.subtasks}
    deployment, degraded = routes[plan.subtasks[0].subtask]
    step = refine.start(
        request,
        digest,
        rt.clock(),
        config,
        deployment=deployment,
        degraded_route=degraded,
        plan=plan,
        routes=routes,
    )
    save_state(rt, step.state)
    if not step.state.single:
        rt.metrics.decomposed.inc()
    for task in step.tasks:
        await rt.emit(task)


def _conflict(request: RequestSubmitted) -> StageError:
    return StageError(
        RejectCode.CONFLICT.value,
        f"request {request.request_id} was already submitted with a different payload",
    )


async def _resent_after_expiry(rt: Runtime, request: RequestSubmitted, digest: str) -> bool:
    """A request id whose state has expired but whose done marker is kept: the same
    payload gets the same final response (no model call), another is a conflict."""
    marker = load_marker(rt, request.request_id)
    if marker is None:
        return False
    response = answer_for(marker, digest)
    if response is None:
        raise _conflict(request)
    await rt.emit(response)
    return True


async def _resent(
    rt: Runtime, request: RequestSubmitted, digest: str, known: refine.RequestState
) -> None:
    """A request id seen before: same payload gets the same answer, another is a conflict."""
    if known.payload_digest != digest:
        raise _conflict(request)
    if known.final is not None:
        await sessions.send_answer(rt, known, known.final)
        await rt.emit(known.final)
    elif known.request_event_id == request.event_id and known.awaiting is not None:
        await sessions.send_prompt(rt, known.awaiting)  # the same turn: counted once
    elif known.request_event_id == request.event_id and known.open_tasks:
        # The very record again (redelivered after a crash): the task sends may be lost.
        for task in known.open_tasks:
            await rt.emit(task)
    else:
        _log.info("request %s resent while in progress; its answer will follow", request.request_id)
