"""When a task still waiting for its verdict is assigned again: after a share of the
time its request had left when it started waiting, at least a floor and at most a cap,
and never past the request's own deadline. Pure: times are passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class StallPolicy:
    share: float
    """Share of the request's remaining time a task may wait for its verdict."""
    floor: timedelta
    """Shortest wait."""
    longest: timedelta
    """Longest wait, however much time is left."""


def resend_due(since: datetime, deadline: datetime, policy: StallPolicy) -> datetime:
    """When a task waiting since ``since`` is sent again, for a request due at ``deadline``."""
    remaining = max(deadline - since, timedelta(0))
    wait = min(policy.longest, max(policy.floor, remaining * policy.share))
    return min(since + wait, deadline)


def stalled(since: datetime, deadline: datetime | None, now: datetime, policy: StallPolicy) -> bool:
    """Whether a task waiting since ``since`` is due to be sent again at ``now`` (a request
    with no known deadline waits the longest)."""
    if deadline is None:
        return now - since >= policy.longest
    return now >= resend_due(since, deadline, policy)
