"""context_stage, the context maintainer: a changelog-backed table of sessions (by
``session_id``) built from the session topic, where intake writes each accepted
prompt and refine each final answer. For a prompt it gives back the session's recent
turns as ``ContextProvided``, which intake plans the request with.

Ordering is what makes a follow-up see the turn before it: refine waits for the
broker to take an answer's turn before it sends the response, and a session's turns
share one partition, so a prompt sent after its client saw the answer is read after
that answer's turn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from agents.context import SessionState, idle_sessions, on_answer, on_prompt, render, touch
from agents.ids import stable_id
from agents.refine import RequestState
from schemas import topics
from schemas.request_events import (
    ContextProvided,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
)
from schemas.topics import SESSIONS_TABLE
from streams.keyed_table import keep_partitions, keyed_table
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
_REMEMBERED = frozenset({"passed", "failed", "timeout"})
"""Statuses whose content joins the session (rejections and errors have none)."""


@dataclass
class Activity:
    """When each session of this worker's partitions last had a prompt or an answer; kept
    on writes, on recovery and on rebalances (the sessions table's listener)."""

    recovered_at: datetime
    """Taken as the activity time of entries stored before sessions had one."""
    at: dict[str, datetime] = field(default_factory=dict)

    def recovered(self, key: bytes, value: bytes | None) -> None:
        sid = key.decode()
        if value is None:
            self.at.pop(sid, None)
            return
        try:
            active = SessionState.model_validate_json(value).active_at
        except ValidationError as exc:
            _log.error("sessions table entry %r is unreadable: %s", key, exc)
            active = None
        self.at[sid] = active or self.recovered_at

    def kept(self, partitions: set[int], count: int) -> None:
        keep_partitions(self.at, partitions, count)


def register(rt: Runtime) -> None:
    activity = Activity(recovered_at=rt.clock())
    table = keyed_table(rt.app, SESSIONS_TABLE, rt.partitions, activity)
    idle = rt.settings.session.idle_s

    @rt.app.agent(rt.topic(topics.SESSIONS), name="context_stage")
    async def context_stage(stream: object) -> None:
        await run(rt, "context", stream, lambda record: handle(rt, table, record, activity))

    @rt.app.timer(interval=max(0.5, min(60.0, idle / 4)))  # type: ignore[untyped-decorator]
    async def session_expiry() -> None:
        expire_idle(table, activity, rt.clock(), timedelta(seconds=idle))


def expire_idle(table: Any, activity: Activity, now: datetime, idle: timedelta) -> int:
    """Delete the sessions idle for ``idle`` or longer; returns how many."""
    expired = idle_sessions(activity.at, now, idle)
    for sid in expired:
        key = sid.encode()
        if key in table:
            del table[key]
        activity.at.pop(sid, None)
    if expired:
        _log.info("%d idle sessions expired", len(expired))
    return len(expired)


async def handle(rt: Runtime, table: Any, record: Record, activity: Activity | None = None) -> None:
    """``table``: the faust table, session_id (bytes) -> ``SessionState`` JSON."""
    turn = rt.codec.decode(record.value, SessionTurn)
    key = turn.session_id.encode()
    raw = table.get(key)
    state = SessionState.model_validate_json(raw) if raw else SessionState()
    now = rt.clock()
    if activity is not None:
        activity.at[turn.session_id] = now
    if turn.role == "user":
        context = state.context
        updated = touch(on_prompt(state, turn.request_id, turn.content), now)
        table[key] = updated.model_dump_json().encode()
        await rt.emit(
            ContextProvided(
                event_id=stable_id(turn.request_id, "context"),
                request_id=turn.request_id,
                occurred_at=rt.clock(),
                config_version=rt.config.version,
                variant=turn.variant,
                session_id=turn.session_id,
                context=render(context),
                turns=len(context.turns),
                dropped=context.dropped,
            )
        )
        return
    answer = turn.content if turn.status in _REMEMBERED and turn.content.strip() else None
    updated = on_answer(
        state,
        turn.request_id,
        answer,
        max_tokens_budget=rt.settings.session.max_context_tokens,
    )
    if updated != state:
        table[key] = touch(updated, now).model_dump_json().encode()


async def send_prompt(rt: Runtime, request: RequestSubmitted) -> None:
    """Write an accepted request's prompt to its session."""
    assert request.session_id is not None
    await _send(
        rt,
        SessionTurn(
            event_id=stable_id(request.request_id, "turn", "user"),
            request_id=request.request_id,
            occurred_at=rt.clock(),
            config_version=rt.config.version,
            variant=request.variant,
            session_id=request.session_id,
            role="user",
            content=request.prompt,
            tenant=request.tenant,
        ),
    )


async def send_answer(rt: Runtime, state: RequestState, response: ResponseDelivered) -> None:
    """Write a session request's final answer to its session, and wait until the
    broker has it: only then may the response go out."""
    if state.session_id is None or response.status == "rejected":
        return  # a rejected request never wrote its prompt to the session
    await _send(
        rt,
        SessionTurn(
            event_id=stable_id(state.request_id, "turn", "assistant"),
            request_id=state.request_id,
            occurred_at=response.occurred_at,
            config_version=response.config_version,
            variant=state.variant,
            session_id=state.session_id,
            role="assistant",
            content=response.content,
            status=response.status,
            tenant=state.tenant,
        ),
    )


async def _send(rt: Runtime, turn: SessionTurn) -> None:
    sent = await rt.topic(topics.SESSIONS).send(
        key=turn.session_id.encode(), value=rt.codec.encode(turn), force=True
    )
    await sent
