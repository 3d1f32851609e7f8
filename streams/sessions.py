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
from typing import Any

from agents.context import SessionState, on_answer, on_prompt, render
from agents.ids import stable_id
from agents.refine import RequestState
from schemas import topics
from schemas.request_events import (
    ContextProvided,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
)
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
TABLE = "sessions"
_REMEMBERED = frozenset({"passed", "failed", "timeout"})
"""Statuses whose content joins the session (rejections and errors have none)."""


def register(rt: Runtime) -> None:
    table = rt.app.Table(
        TABLE, default=None, key_type=bytes, value_type=bytes, partitions=rt.partitions
    )

    @rt.app.agent(rt.topic(topics.SESSIONS), name="context_stage")
    async def context_stage(stream: object) -> None:
        await run(rt, "context", stream, lambda record: handle(rt, table, record))


async def handle(rt: Runtime, table: Any, record: Record) -> None:
    """``table``: the faust table, session_id (bytes) -> ``SessionState`` JSON."""
    turn = rt.codec.decode(record.value, SessionTurn)
    key = turn.session_id.encode()
    raw = table.get(key)
    state = SessionState.model_validate_json(raw) if raw else SessionState()
    if turn.role == "user":
        context = state.context
        table[key] = on_prompt(state, turn.request_id, turn.content).model_dump_json().encode()
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
        table[key] = updated.model_dump_json().encode()


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
