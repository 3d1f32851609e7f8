"""Weighted, health-aware deployment choice: splits, health, degradation, replays."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agents.balancer import (
    Deployment,
    NoDeployment,
    draw,
    for_specialist,
    pick,
    pick_for,
    route,
)

BIG = Deployment("big", "general", 70, "qwen-7b")
MID = Deployment("mid", "general", 20, "qwen-3b")
SMALL = Deployment("small", "general", 10, "smollm2")
OFF = Deployment("off", "general", 0, "retired")
FLEET = (SMALL, OFF, BIG, MID)
ALL_UP: dict[str, bool] = {}
TOLERANCE = 0.03  # percentage points, over 1,000 picks
N = 1000


def shares(names: list[str]) -> dict[str, float]:
    counts = Counter(names)
    return {name: counts[name] / len(names) for name in counts}


def test_deterministic_picks_of_1000_ids_match_the_weights() -> None:
    names = [pick_for(f"req-{i}", "main", FLEET, healthy=ALL_UP).deployment.name for i in range(N)]
    split = shares(names)
    assert set(split) == {"big", "mid", "small"}  # a zero weight gets nothing
    for d in (BIG, MID, SMALL):
        assert split[d.name] == pytest.approx(d.weight / 100, abs=TOLERANCE)


def test_seeded_random_picks_match_the_weights() -> None:
    rng = random.Random(20260301)
    names = [pick(FLEET, healthy=ALL_UP, rand=rng.random()).deployment.name for _ in range(N)]
    split = shares(names)
    for d in (BIG, MID, SMALL):
        assert split[d.name] == pytest.approx(d.weight / 100, abs=TOLERANCE)


def test_an_unhealthy_deployment_gets_nothing_and_the_rest_share_its_load() -> None:
    healthy = {"big": False, "mid": True}  # "small" has no report yet: counts as healthy
    choices = [pick_for(f"req-{i}", "main", FLEET, healthy=healthy) for i in range(N)]
    split = shares([c.deployment.name for c in choices])
    assert "big" not in split
    assert split["mid"] == pytest.approx(20 / 30, abs=TOLERANCE)
    assert split["small"] == pytest.approx(10 / 30, abs=TOLERANCE)
    assert not any(c.degraded for c in choices)


def test_with_none_healthy_the_choice_is_by_weight_and_marked_degraded() -> None:
    down = {"big": False, "mid": False, "small": False}
    choice = pick(FLEET, healthy=down, rand=0.0)
    assert choice.degraded
    assert choice.deployment == BIG  # sorted by name: big, mid, small
    assert pick(FLEET, healthy=down, rand=0.95).deployment == SMALL


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, BIG), (0.6999, BIG), (0.7, MID), (0.8999, MID), (0.9, SMALL), (0.9999999, SMALL)],
)
def test_rand_maps_onto_cumulative_weights_in_name_order(rand: float, expected: Deployment) -> None:
    assert pick(FLEET, healthy=ALL_UP, rand=rand).deployment == expected
    assert pick(tuple(reversed(FLEET)), healthy=ALL_UP, rand=rand).deployment == expected


def test_replays_pick_the_same_deployment_and_subtasks_spread() -> None:
    first = pick_for("req-42", "facts", FLEET, healthy=ALL_UP)
    assert pick_for("req-42", "facts", FLEET, healthy=ALL_UP) == first
    assert len({draw("req-42", s) for s in ("facts", "ask-1", "pitfalls", "synthesis")}) == 4


def test_draw_is_in_the_unit_interval() -> None:
    values = [draw(f"r{i}", "main") for i in range(N)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / N < 0.55


@pytest.mark.parametrize("rand", [-0.1, 1.0, 2.0])
def test_rand_outside_the_unit_interval_is_refused(rand: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        pick(FLEET, healthy=ALL_UP, rand=rand)


@pytest.mark.parametrize("fleet", [(), (OFF,)])
def test_no_positive_weight_is_a_non_retriable_error(fleet: tuple[Deployment, ...]) -> None:
    with pytest.raises(NoDeployment) as info:
        pick(fleet, healthy=ALL_UP, rand=0.5)
    assert info.value.retriable is False


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_a_bad_weight_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        Deployment("x", "general", weight, "m")


def test_for_specialist_falls_back_to_general() -> None:
    reasoner = Deployment("think", "reasoning", 1, "qwen-7b")
    fleet = (*FLEET, reasoner)
    assert for_specialist(fleet, "reasoning") == (reasoner,)
    assert for_specialist(fleet, "retrieval") == FLEET
    assert for_specialist(fleet, "retrieval", fallback="reasoning") == (reasoner,)
    assert for_specialist((reasoner,), "qa") == ()


def test_route_uses_only_weighted_deployments_of_the_chain() -> None:
    chain = ["a", "b", "c"]
    assert route({}, chain, healthy={}, request_id="r", subtask="main") is None
    assert route({"z": 1.0}, chain, healthy={}, request_id="r", subtask="main") is None
    picks = {
        route(
            {"a": 1.0, "b": 1.0, "z": 5.0},
            chain,
            healthy={"b": False},
            request_id=f"r{i}",
            subtask="main",
        ).deployment.name  # type: ignore[union-attr]
        for i in range(200)
    }
    assert picks == {"a"}
