"""The refinement table: request_id (bytes) -> RequestState, changelog-backed, plus the
in-memory index of open deadlines the deadline timer scans."""

from __future__ import annotations

from datetime import datetime

from agents.refine import RequestState
from streams.runtime import Runtime


def load_state(rt: Runtime, request_id: str) -> RequestState | None:
    raw = rt.table.get(request_id.encode())
    if raw is None:
        return None
    return RequestState.model_validate_json(raw)


def save_state(rt: Runtime, state: RequestState) -> None:
    rt.table[state.request_id.encode()] = state.model_dump_json().encode()
    if state.done:
        rt.open_deadlines.pop(state.request_id, None)
    else:
        rt.open_deadlines[state.request_id] = state.deadline_at


def overdue(rt: Runtime, now: datetime) -> list[str]:
    return [rid for rid, deadline in rt.open_deadlines.items() if deadline <= now]


def reindex(rt: Runtime) -> None:
    """Rebuild the deadline index from the local table (after recovery or a rebalance)."""
    rt.open_deadlines.clear()
    for raw in list(rt.table.values()):
        state = RequestState.model_validate_json(raw)
        if not state.done:
            rt.open_deadlines[state.request_id] = state.deadline_at
