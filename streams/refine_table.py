"""The refinement table: request_id (bytes) -> RequestState, changelog-backed, plus the
in-memory indexes the refine timer scans: open deadlines, and when each open
request's oldest task still waiting for its verdict was assigned."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import ValidationError

from agents.refine import RequestState
from streams.runtime import Runtime

_log = logging.getLogger(__name__)


def load_state(rt: Runtime, request_id: str) -> RequestState | None:
    raw = rt.table.get(request_id.encode())
    if raw is None:
        return None
    return RequestState.model_validate_json(raw)


def save_state(rt: Runtime, state: RequestState) -> None:
    rt.table[state.request_id.encode()] = state.model_dump_json().encode()
    if state.done:
        rt.open_deadlines.pop(state.request_id, None)
        rt.open_tasks.pop(state.request_id, None)
    else:
        _index(rt, state)


def overdue(rt: Runtime, now: datetime) -> list[str]:
    return [rid for rid, deadline in rt.open_deadlines.items() if deadline <= now]


def stalled(rt: Runtime, now: datetime, after: timedelta) -> list[str]:
    """Open requests whose current task has waited longer than ``after`` for a verdict."""
    return [rid for rid, assigned in rt.open_tasks.items() if now - assigned > after]


def reindex(rt: Runtime) -> None:
    """Rebuild the indexes from the local table (after recovery or a rebalance)."""
    rt.open_deadlines.clear()
    rt.open_tasks.clear()
    for key, raw in list(rt.table.items()):
        try:
            state = RequestState.model_validate_json(raw)
        except ValidationError as exc:
            _log.error("refinement table entry %r is unreadable, not indexed: %s", key, exc)
            continue
        if not state.done:
            _index(rt, state)


def _index(rt: Runtime, state: RequestState) -> None:
    """An open request's deadline, and when its oldest waiting task was assigned."""
    rt.open_deadlines[state.request_id] = state.deadline_at
    waiting = [t.occurred_at for t in state.open_tasks]
    if waiting:
        rt.open_tasks[state.request_id] = min(waiting)
    else:
        rt.open_tasks.pop(state.request_id, None)
