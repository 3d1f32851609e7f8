"""The refinement table as the stages use it: request_id -> RequestState while a request
is open and for a retention after it finished, then only its done marker (payload
digest and final response) until the marker's own retention or the cap evicts it.
Expiry deletes, so the changelogs carry tombstones and compact."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from agents.refine import RequestState
from agents.retention import (
    DoneMarker,
    Retention,
    expired_markers,
    expired_states,
    marker_of,
)
from agents.stall import StallPolicy
from agents.stall import stalled as is_stalled
from streams.refine_store import RefineIndex, decode_marker, encode_marker
from streams.runtime import Runtime

_log = logging.getLogger(__name__)


def index(rt: Runtime) -> RefineIndex:
    idx: RefineIndex = rt.table.index
    return idx


def load_state(rt: Runtime, request_id: str) -> RequestState | None:
    raw = rt.table.states.get(request_id.encode())
    if raw is None:
        return None
    return RequestState.model_validate_json(raw)


def load_marker(rt: Runtime, request_id: str) -> DoneMarker | None:
    """The done marker of a finished request whose state has expired."""
    raw = rt.table.markers.get(request_id.encode())
    return decode_marker(raw) if raw is not None else None


def save_state(rt: Runtime, state: RequestState) -> None:
    """Write the state and index it; a finished request also gets its done marker."""
    rt.table.states[state.request_id.encode()] = state.model_dump_json().encode()
    index(rt).track(state.request_id, state)
    if state.done:
        _save_marker(rt, state)


def _save_marker(rt: Runtime, state: RequestState) -> None:
    marker = marker_of(state)
    key = state.request_id.encode()
    if marker is None or key in rt.table.markers:
        return
    rt.table.markers[key] = encode_marker(marker)
    index(rt).markers[state.request_id] = marker.done_at


def overdue(rt: Runtime, now: datetime) -> list[str]:
    return [rid for rid, deadline in index(rt).open_deadlines.items() if deadline <= now]


def stall_policy(rt: Runtime) -> StallPolicy:
    w = rt.settings.worker
    return StallPolicy(
        share=w.stall_share,
        floor=timedelta(seconds=w.stall_floor_s),
        longest=timedelta(seconds=w.stall_s),
    )


def stalled(rt: Runtime, now: datetime, policy: StallPolicy) -> list[str]:
    """Open requests whose oldest waiting task is due to be sent again: it has waited its
    share of the time the request had left (``agents.stall``)."""
    idx = index(rt)
    return [
        rid
        for rid, since in idx.open_tasks.items()
        if is_stalled(since, idx.open_deadlines.get(rid), now, policy)
    ]


def retention(rt: Runtime) -> Retention:
    r = rt.settings.refine
    return Retention(
        state=timedelta(seconds=r.retain_s),
        marker=timedelta(seconds=r.done_retain_s),
        max_markers=r.max_done,
    )


def expire_states(rt: Runtime, now: datetime) -> int:
    """Delete the full state of requests finished longer ago than the retention (their
    markers stay); returns how many."""
    expired = expired_states(index(rt).finished, now, retention(rt))
    for request_id in expired:
        key = request_id.encode()
        state = load_state(rt, request_id)
        if state is not None:
            _save_marker(rt, state)  # a state stored before markers existed gets one now
        if key in rt.table.states:
            del rt.table.states[key]
        index(rt).track(request_id, None)
    if expired:
        _log.info("%d finished requests left the refinement table", len(expired))
    return len(expired)


def expire_markers(rt: Runtime, now: datetime) -> int:
    """Delete the markers past their retention, and the oldest beyond the cap."""
    expired = expired_markers(index(rt).markers, now, retention(rt))
    for request_id in expired:
        key = request_id.encode()
        if key in rt.table.markers:
            del rt.table.markers[key]
        index(rt).markers.pop(request_id, None)
    if expired:
        _log.info("%d done markers expired", len(expired))
    return len(expired)
