"""context_stage, the context maintainer: a changelog-backed table of sessions (by
``session_id``) built from the session topic, where intake writes each accepted
prompt and refine each final answer. For a prompt it gives back the session's recent
turns as ``ContextProvided``, which intake plans the request with.

Ordering is what makes a follow-up see the turn before it: the executor waits for the
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

from agents.context import SessionState, idle_sessions
from agents.effects import on_turn
from schemas import topics
from schemas.request_events import SessionTurn
from schemas.topics import SESSIONS_TABLE
from streams import background
from streams.keyed_table import keep_partitions, keyed_table
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


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

    @background.timer(rt, max(0.5, min(60.0, idle / 4)), "session_expiry")
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
    budget = rt.settings.session.max_context_tokens
    updated, provided = on_turn(state, turn, now, rt.config.version, budget)
    if updated is not None:
        table[key] = updated.model_dump_json().encode()
    if provided is not None:
        await rt.emit(provided)
