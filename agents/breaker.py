"""A circuit breaker per model deployment, as a pure state machine over explicit time.

closed -> open when, within the sliding window, the last ``consecutive_failures``
calls all failed, or at least ``min_calls`` calls failed at ``error_rate`` or more;
open -> half_open after ``open_s``; half_open admits ``half_open_probes`` calls,
and a probe's success closes the breaker while its failure re-opens it.

States are immutable: ``allow`` and ``record`` return the next state. ``now`` is
a monotonic time in seconds, passed in; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.errors import ModelUnavailable

BreakerMode = Literal["closed", "open", "half_open"]
HealthState = Literal["healthy", "degraded", "down"]


class CircuitOpen(ModelUnavailable):
    """No deployment would take the call: every circuit breaker is open."""

    kind = "circuit_open"
    retriable = True


class BreakerPolicy(BaseModel):
    """When a deployment's breaker opens, how long it stays open, how it is probed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(default=30.0, gt=0.0)
    consecutive_failures: int = Field(default=5, ge=1)
    min_calls: int = Field(default=10, ge=1)
    error_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    open_s: float = Field(default=15.0, ge=0.0)
    half_open_probes: int = Field(default=1, ge=1)
    bucket_s: float = Field(default=1.0, gt=0.0)
    """Granularity of the sliding window: calls are counted in buckets this long."""
    healthy_error_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """A closed breaker reports ``healthy`` below this error rate, ``degraded`` at or above."""


@dataclass(frozen=True, slots=True)
class _Bucket:
    index: int
    calls: int
    failures: int


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One deployment's breaker. Start with ``BreakerState(policy)``."""

    policy: BreakerPolicy
    mode: BreakerMode = "closed"
    since: float = 0.0
    """When ``mode`` was entered (half_open: when the current probes were admitted)."""
    probes: int = 0
    """Probes admitted in the current half-open period."""
    buckets: tuple[_Bucket, ...] = ()
    streak: tuple[float, ...] = ()
    """Times of the current run of consecutive failures (at most the threshold)."""
    last_success_at: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """What health reporting needs, over the window ending at the time asked about."""

    mode: BreakerMode
    calls: int
    failures: int
    last_success_at: float | None

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


def allow(state: BreakerState, now: float) -> tuple[bool, BreakerState]:
    """Whether a call may go to the deployment now, and the state after admitting it."""
    policy = state.policy
    if state.mode == "closed":
        return True, state
    if state.mode == "open":
        if now - state.since < policy.open_s:
            return False, state
        return True, replace(state, mode="half_open", since=now, probes=1)
    if state.probes < policy.half_open_probes:
        return True, replace(state, probes=state.probes + 1)
    if now - state.since >= policy.open_s:
        # The admitted probes never reported back (their callers were cancelled).
        return True, replace(state, since=now, probes=1)
    return False, state


def record(state: BreakerState, now: float, ok: bool) -> BreakerState:
    """The state after a call admitted by ``allow`` finished (``ok``) or failed."""
    counted = replace(
        state,
        buckets=_count(state, now, ok),
        last_success_at=now if ok else state.last_success_at,
    )
    if state.mode == "half_open":
        return _closed(counted, now) if ok else _opened(counted, now)
    if state.mode == "open":
        # A straggler admitted before the breaker opened: counted, but it does not
        # restart the open period nor close a breaker nobody has probed.
        return counted
    streak = () if ok else (*state.streak, now)[-state.policy.consecutive_failures :]
    counted = replace(counted, streak=streak)
    return _opened(counted, now) if _tripped(counted, now) else counted


def stats(state: BreakerState, now: float) -> BreakerStats:
    """Calls and failures in the window ending at ``now``; the breaker's mode."""
    live = _live(state, now)
    return BreakerStats(
        mode=state.mode,
        calls=sum(b.calls for b in live),
        failures=sum(b.failures for b in live),
        last_success_at=state.last_success_at,
    )


def health(state: BreakerState, now: float) -> HealthState:
    """``down`` when open; ``degraded`` half-open or failing often; else ``healthy``."""
    if state.mode == "open":
        return "down"
    if state.mode == "half_open":
        return "degraded"
    if stats(state, now).error_rate >= state.policy.healthy_error_rate:
        return "degraded"
    return "healthy"


def _index(policy: BreakerPolicy, now: float) -> int:
    return math.floor(now / policy.bucket_s)


def _live(state: BreakerState, now: float) -> tuple[_Bucket, ...]:
    """The buckets that overlap the window ``(now - window_s, now]``."""
    policy = state.policy
    oldest = _index(policy, now - policy.window_s) + 1
    return tuple(b for b in state.buckets if b.index >= oldest)


def _count(state: BreakerState, now: float, ok: bool) -> tuple[_Bucket, ...]:
    live = _live(state, now)
    index = _index(state.policy, now)
    failed = 0 if ok else 1
    if live and live[-1].index >= index:
        last = live[-1]
        return (*live[:-1], _Bucket(last.index, last.calls + 1, last.failures + failed))
    return (*live, _Bucket(index, 1, failed))


def _tripped(state: BreakerState, now: float) -> bool:
    policy = state.policy
    streak = state.streak
    if len(streak) >= policy.consecutive_failures and now - streak[0] <= policy.window_s:
        return True
    counts = stats(state, now)
    return counts.calls >= policy.min_calls and counts.error_rate >= policy.error_rate


def _opened(state: BreakerState, now: float) -> BreakerState:
    return replace(state, mode="open", since=now, probes=0, streak=())


def _closed(state: BreakerState, now: float) -> BreakerState:
    # A fresh window: the failures that opened the breaker must not re-open it at
    # the first new failure. The probe's success is the first call of the new window.
    fresh = (_Bucket(_index(state.policy, now), 1, 0),)
    return replace(state, mode="closed", since=now, probes=0, streak=(), buckets=fresh)
