"""refine_stage: the table-backed loop over verdicts and deadlines; re-asks with the
critique or finalizes with the best attempt. A timer raises overdue deadlines."""

from __future__ import annotations

import logging

from agents import refinement
from agents.ids import stable_id
from agents.stall import stalled as is_stalled
from schemas import topics
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import DeadlinePassed, VerdictIssued
from streams import background, effects
from streams.refine_table import (
    expire_markers,
    expire_states,
    index,
    load_marker,
    load_state,
    overdue,
    stall_policy,
    stalled,
)
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
_MARKER_SWEEP_EVERY = 30
"""Markers live for days: the timer looks at them every this many ticks."""


def register(rt: Runtime) -> None:
    source = rt.sources(topics.VERDICTS, topics.DEADLINES)
    ticks = 0

    @rt.app.agent(source, name="refine_stage")
    async def refine_stage(stream: object) -> None:
        await run(rt, "refine", stream, lambda record: handle(rt, record))

    @background.timer(rt, rt.settings.worker.deadline_scan_s, "deadline_timer")
    async def deadline_timer() -> None:
        nonlocal ticks
        await raise_deadlines(rt)
        await reassign_stalled(rt)
        now = rt.clock()
        expire_states(rt, now)
        if ticks % _MARKER_SWEEP_EVERY == 0:
            expire_markers(rt, now)
        ticks += 1
        rt.metrics.open_requests.set(len(index(rt).open_deadlines))
        rt.metrics.refine_table_entries.set(len(rt.table.states))
        rt.metrics.refine_done_markers.set(len(rt.table.markers))


async def raise_deadlines(rt: Runtime) -> None:
    now = rt.clock()
    for request_id in overdue(rt, now):
        deadline = index(rt).open_deadlines.pop(request_id)
        await rt.emit(
            DeadlinePassed(
                event_id=stable_id(request_id, "deadline", deadline.isoformat()),
                request_id=request_id,
                occurred_at=now,
                config_version=rt.config.version,
                deadline_at=deadline,
            )
        )


async def reassign_stalled(rt: Runtime) -> None:
    """Send again a task that has waited too long for its verdict (the same event, so
    every stage treats a copy that does arrive as a duplicate): a task lost between a
    crash and a redelivery must not leave its request waiting for the deadline. How long
    is too long follows the request's own deadline (``agents.stall``)."""
    now = rt.clock()
    policy = stall_policy(rt)
    waiting = index(rt).open_tasks
    for request_id in stalled(rt, now, policy):
        state = load_state(rt, request_id)
        if state is None or state.done or not state.open_tasks:
            waiting.pop(request_id, None)
            continue
        last = waiting[request_id]
        waiting[request_id] = now  # the next copy waits its share of what is left then
        for task in state.open_tasks:
            since = max(task.occurred_at, last)
            if is_stalled(since, state.deadline_at, now, policy):
                _log.warning(
                    "task %s waited %s for a verdict; assigning it again",
                    task.task_id,
                    now - since,
                )
                await rt.emit(task)


async def handle(rt: Runtime, record: Record) -> None:
    event = rt.codec.decode_any(record.value)
    if not isinstance(event, VerdictIssued | DeadlinePassed):
        raise DecodeError(DecodeReason.WRONG_RECORD, f"refine does not take {event.record_name}")
    known = load_state(rt, event.request_id)
    marker = load_marker(rt, event.request_id) if known is None else None
    # Decided under the configuration the request was admitted with.
    config = rt.config_at(known.config_version) if known else rt.live_config()
    await effects.apply(rt, refinement.on_input(event, known, marker, rt.clock(), config))
