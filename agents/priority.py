"""Priority lanes: a request's priority (0 lowest .. 9 highest) picks a lane, and a
scheduler decides which lane the specialist serves next.

Lanes belong where the scarce resource is, the model calls, so they apply to tasks.
Durable lanes need one topic per lane (``guardian.tasks_high.v1``,
``guardian.tasks.v1`` as the normal lane so one-lane deployments are unchanged,
``guardian.tasks_low.v1``): a Kafka partition is FIFO, so no scheduling of one shared
topic can let an urgent task overtake the backlog ahead of it in its partition. The
specialist reads each lane topic a few tasks ahead and hands its model-call slots out
with this scheduler (``streams.lanes``); the backlog stays in Kafka. The cost: three
times the task topics and consumer assignments. Per-request order survives, since all
tasks of a request carry its priority, share a lane and are keyed by ``request_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

MAX_PRIORITY = 9
LANE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("normal",),
    2: ("normal", "low"),
    3: ("high", "normal", "low"),
}


def lane_for(priority: int, lanes: int = 3) -> int:
    """Lane 0 is the most urgent. With three lanes: 7-9 high, 4-6 normal, 0-3 low."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority} is outside 0..{MAX_PRIORITY}")
    if not 1 <= lanes <= MAX_PRIORITY + 1:
        raise ValueError(f"lanes must be in 1..{MAX_PRIORITY + 1}, got {lanes}")
    return lanes - 1 - priority * lanes // (MAX_PRIORITY + 1)


def lane_name(lane: int, lanes: int = 3) -> str:
    """``high``/``normal``/``low`` for up to three lanes, else ``lane<N>``."""
    names = LANE_NAMES.get(lanes)
    return names[lane] if names is not None else f"lane{lane}"


@dataclass(frozen=True)
class LaneScheduler:
    """Strict priority with a starvation guard.

    The most urgent non-empty lane is served, except that of every ``guard_every``
    consecutive picks made while a lower lane waits, one serves a lower lane: the
    waiting lower lane served longest ago (FIFO lanes make that its oldest request).
    Immutable: ``next_lane`` returns the lane and the next scheduler state.
    """

    lanes: int = 3
    guard_every: int = 8
    bypassed: int = 0
    """Consecutive picks that passed over a waiting lower lane."""
    picks: int = 0
    last_served: tuple[int, ...] = ()
    """The pick number at which each lane was last served (0: never)."""

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.guard_every < 2:
            raise ValueError("need lanes >= 1 and guard_every >= 2")
        if not self.last_served:
            object.__setattr__(self, "last_served", (0,) * self.lanes)
        if len(self.last_served) != self.lanes:
            raise ValueError("last_served needs one entry per lane")

    def next_lane(self, depths: Sequence[int]) -> tuple[int | None, LaneScheduler]:
        """The lane to serve given each lane's queue depth (None when all are empty)."""
        if len(depths) != self.lanes:
            raise ValueError(f"expected {self.lanes} depths, got {len(depths)}")
        waiting = [lane for lane, depth in enumerate(depths) if depth > 0]
        if not waiting:
            return None, self
        top, lower = waiting[0], waiting[1:]
        if lower and self.bypassed + 1 >= self.guard_every:
            lane = min(lower, key=lambda n: (self.last_served[n], n))
            return lane, self._served(lane, bypassed=0)
        return top, self._served(top, bypassed=self.bypassed + 1 if lower else 0)

    def _served(self, lane: int, *, bypassed: int) -> LaneScheduler:
        picks = self.picks + 1
        served = tuple(picks if n == lane else t for n, t in enumerate(self.last_served))
        return replace(self, bypassed=bypassed, picks=picks, last_served=served)
