"""Priority lanes: the priority-to-lane map and the strict scheduler's starvation guard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from agents.priority import LaneScheduler, lane_for, lane_name

HIGH, NORMAL, LOW = 0, 1, 2


@pytest.mark.parametrize(
    ("priority", "lane"),
    [(9, HIGH), (7, HIGH), (6, NORMAL), (5, NORMAL), (4, NORMAL), (3, LOW), (0, LOW)],
)
def test_three_lanes(priority: int, lane: int) -> None:
    assert lane_for(priority) == lane


@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 10])
def test_every_lane_count_is_monotone_and_covers_all_lanes(lanes: int) -> None:
    mapped = [lane_for(p, lanes) for p in range(10)]
    assert mapped == sorted(mapped, reverse=True)  # higher priority, lower (more urgent) lane
    assert set(mapped) == set(range(lanes))


def test_the_default_priority_is_in_the_normal_lane() -> None:
    assert lane_name(lane_for(5)) == "normal"
    assert lane_name(lane_for(5, 2), 2) == "normal"
    assert lane_name(3, 5) == "lane3"


@pytest.mark.parametrize(("priority", "lanes"), [(-1, 3), (10, 3), (5, 0), (5, 11)])
def test_out_of_range_is_refused(priority: int, lanes: int) -> None:
    with pytest.raises(ValueError, match=r"priority|lanes"):
        lane_for(priority, lanes)


def serve(sched: LaneScheduler, depths: Sequence[int], picks: int) -> list[int | None]:
    """``picks`` decisions over constant queue depths (always-busy lanes)."""
    lanes: list[int | None] = []
    for _ in range(picks):
        lane, sched = sched.next_lane(depths)
        lanes.append(lane)
    return lanes


def test_strict_priority_when_lower_lanes_are_empty() -> None:
    assert serve(LaneScheduler(guard_every=3), [5, 0, 0], 10) == [HIGH] * 10
    assert serve(LaneScheduler(guard_every=3), [0, 2, 0], 4) == [NORMAL] * 4


def test_every_nth_pick_serves_a_waiting_lower_lane() -> None:
    lanes = serve(LaneScheduler(guard_every=4), [9, 9, 9], 16)
    assert lanes == [HIGH, HIGH, HIGH, NORMAL, HIGH, HIGH, HIGH, LOW] * 2


def test_the_guard_picks_the_lower_lane_served_longest_ago() -> None:
    # Normal was served at pick 1, low never: the guard goes to low first.
    sched = LaneScheduler(guard_every=2)
    lane, sched = sched.next_lane([0, 1, 1])
    assert lane == NORMAL
    lane, sched = sched.next_lane([0, 1, 1])
    assert lane == LOW
    assert sched.last_served == (0, 1, 2)


def test_no_lane_starves_under_sustained_high_load() -> None:
    counts = Counter(serve(LaneScheduler(guard_every=5), [100, 100, 100], 1000))
    assert counts[HIGH] == 800
    assert counts[NORMAL] == counts[LOW] == 100


def test_all_empty_serves_nothing_and_keeps_the_state() -> None:
    sched = LaneScheduler()
    assert sched.next_lane([0, 0, 0]) == (None, sched)


def test_the_scheduler_is_immutable() -> None:
    before = LaneScheduler()
    _, after = before.next_lane([1, 1, 0])
    assert (before.picks, before.bypassed, before.last_served) == (0, 0, (0, 0, 0))
    assert (after.picks, after.bypassed, after.last_served) == (1, 1, (1, 0, 0))


def test_the_bypass_streak_resets_when_lower_lanes_empty() -> None:
    sched = LaneScheduler(guard_every=3)
    _, sched = sched.next_lane([1, 1, 0])
    _, sched = sched.next_lane([1, 0, 0])  # nobody bypassed
    assert sched.bypassed == 0
    lane, sched = sched.next_lane([1, 1, 0])
    assert lane == HIGH


@pytest.mark.parametrize(
    ("kwargs", "depths"),
    [
        ({"lanes": 0}, None),
        ({"guard_every": 1}, None),
        ({"last_served": (0, 0)}, None),
        ({}, [1, 1]),
    ],
)
def test_bad_shapes_are_refused(kwargs: dict[str, object], depths: list[int] | None) -> None:
    with pytest.raises(ValueError, match=r"lanes|guard_every|last_served|depths"):
        LaneScheduler(**kwargs).next_lane(depths or [0, 0, 0])  # type: ignore[arg-type]
