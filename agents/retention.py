"""Retention of finished requests: when a finished request's full state leaves the
refinement table, and how long the small done marker that still answers its resends
stays (a retention and a cap on the markers a worker holds, oldest evicted first).

Pure: the stage passes its index (id -> when the entry finished) and the time in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agents.refine import RequestState
from schemas.request_events import ResponseDelivered


@dataclass(frozen=True)
class Retention:
    state: timedelta
    """A finished request's full state stays this long after its final response."""
    marker: timedelta
    """Its done marker stays this long after the final response."""
    max_markers: int
    """Markers one worker holds at most; beyond that the oldest go first."""


class DoneMarker(BaseModel):
    """What is kept of a finished request once its state is gone: enough to recognise a
    resend (its payload digest) and to answer it with the very same final response."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payload_digest: str
    response: ResponseDelivered

    @property
    def request_id(self) -> str:
        return self.response.request_id

    @property
    def done_at(self) -> datetime:
        return self.response.occurred_at


def finished_at(state: RequestState) -> datetime | None:
    """When the request got its final response (None: still open)."""
    return state.final.occurred_at if state.final is not None else None


def marker_of(state: RequestState) -> DoneMarker | None:
    """The done marker of a finished request (None: still open)."""
    if state.final is None:
        return None
    return DoneMarker(payload_digest=state.payload_digest, response=state.final)


def answer_for(marker: DoneMarker, digest: str) -> ResponseDelivered | None:
    """The answer to a resend of a finished request: its final response again when the
    payload is the same; None when it differs (a conflict)."""
    return marker.response if marker.payload_digest == digest else None


def due(finished: Mapping[str, datetime], now: datetime, after: timedelta) -> list[str]:
    """The entries that finished at least ``after`` before ``now``."""
    cutoff = now - after
    return [key for key, at in finished.items() if at <= cutoff]


def expired_states(finished: Mapping[str, datetime], now: datetime, policy: Retention) -> list[str]:
    """Finished requests whose full state leaves the table now."""
    return due(finished, now, policy.state)


def expired_markers(markers: Mapping[str, datetime], now: datetime, policy: Retention) -> list[str]:
    """Markers past their retention, then the oldest of the rest beyond the cap."""
    old = due(markers, now, policy.marker)
    excess = len(markers) - len(old) - policy.max_markers
    if excess <= 0:
        return old
    gone = set(old)
    rest = sorted((at, key) for key, at in markers.items() if key not in gone)
    return old + [key for _, key in rest[:excess]]
