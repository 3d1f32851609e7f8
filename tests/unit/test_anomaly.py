"""The anomaly detector on fixed synthetic streams with known anomalies (a step up, a
step down, a slow drift, a step inside a daily cycle) and known false-alarm traps
(noise, a single spike, a daily cycle): precision and recall over the whole set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from agents.anomaly import DetectorPolicy, Finding, SeriesState, observe

SIGMA = 5.0
LEVEL = 100.0
DAY = 96
"""Windows per cycle of the seasonal streams (15-minute windows)."""
SEEDS = range(12)


@dataclass(frozen=True)
class Stream:
    kind: str
    values: np.ndarray
    start: int | None
    """Where the anomaly starts; None for a trap."""
    within: int = 0
    """Windows after ``start`` a detection counts in."""
    season: int = 0


def stream(kind: str, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    n = 8 * DAY if kind.startswith("cycle") else 400
    t = np.arange(n)
    noise = rng.normal(0.0, SIGMA, n)
    base = LEVEL + noise
    if kind == "noise":
        return Stream(kind, base, None)
    if kind == "spike":
        base[250] += 10 * SIGMA
        return Stream(kind, base, None)
    if kind in {"step_up", "step_down"}:
        base[250:] += (6 if kind == "step_up" else -6) * SIGMA
        return Stream(kind, base, 250, within=10)
    if kind == "drift":
        base[150:] += 0.04 * SIGMA * (t[150:] - 150)
        return Stream(kind, base, 150, within=200)
    cycle = base + 5 * SIGMA * np.sin(2 * np.pi * t / DAY)
    if kind == "cycle":
        return Stream(kind, cycle, None, season=DAY)
    cycle[6 * DAY + 10 :] += 6 * SIGMA
    return Stream(kind, cycle, 6 * DAY + 10, within=10, season=DAY)


KINDS = ("noise", "spike", "cycle", "step_up", "step_down", "drift", "cycle_step")


def run(s: Stream) -> list[tuple[int, Finding]]:
    policy = DetectorPolicy(season=s.season, history=60)
    state, found = SeriesState(), []
    for i, value in enumerate(s.values):
        state, finding = observe(state, float(value), policy)
        if finding is not None:
            found.append((i, finding))
    return found


def score(streams: list[Stream]) -> tuple[float, float, list[str]]:
    """Precision: findings that fall in an anomaly's window of detection, over all
    findings (a later finding of the same anomaly counts neither way). Recall:
    anomalies found in their window, over all anomalies."""
    true_pos = false_pos = found_anomalies = anomalies = 0
    misses = []
    for s in streams:
        hits = run(s)
        if s.start is not None:
            anomalies += 1
            caught = [i for i, _ in hits if s.start <= i <= s.start + s.within]
            found_anomalies += bool(caught)
            true_pos += bool(caught)
            early = [i for i, _ in hits if i < s.start]
            false_pos += len(early)
            if not caught:
                misses.append(f"{s.kind}: missed ({[i for i, _ in hits]})")
        else:
            false_pos += len(hits)
            misses += [f"{s.kind}: false alarm at {i}" for i, _ in hits]
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
    return precision, found_anomalies / anomalies, misses


def test_precision_and_recall_on_the_synthetic_set_are_at_least_0_9() -> None:
    streams = [stream(kind, seed) for kind in KINDS for seed in SEEDS]
    precision, recall, misses = score(streams)
    print(f"anomaly detector: precision {precision:.3f}, recall {recall:.3f}")  # noqa: T201
    assert precision >= 0.9, misses
    assert recall >= 0.9, misses


@pytest.mark.parametrize("kind", ["step_up", "step_down", "drift", "cycle_step"])
def test_each_kind_of_anomaly_is_found_with_its_baseline_and_direction(kind: str) -> None:
    s = stream(kind, 0)
    hits = run(s)
    assert s.start is not None
    first = next((i, f) for i, f in hits if i >= s.start)
    i, finding = first
    assert i <= s.start + s.within
    up = kind != "step_down"
    assert (finding.score > 0) == up
    assert (finding.observed > finding.baseline) == up
    if kind in {"step_up", "step_down"}:
        assert finding.kind == "level"
    if kind == "drift":
        assert finding.kind == "drift", "a slow drift stays inside the level threshold"


@pytest.mark.parametrize("kind", ["noise", "spike", "cycle"])
def test_traps_raise_nothing(kind: str) -> None:
    assert run(stream(kind, 0)) == []


def test_a_cycle_without_its_season_is_a_false_alarm_which_the_season_removes() -> None:
    s = stream("cycle", 1)
    unseasoned = Stream("cycle", s.values, None)
    assert run(unseasoned), "the cycle alone fires a detector blind to it"
    assert run(s) == []


def test_a_long_step_becomes_the_new_normal_and_fires_once() -> None:
    values = stream("step_up", 3).values
    policy = DetectorPolicy(history=60)
    state, found = SeriesState(), []
    for value in values:
        state, finding = observe(state, float(value), policy)
        found += [finding] if finding else []
    assert len(found) == 1
    assert state.open is None
    assert abs(float(np.median(state.values[-30:])) - (LEVEL + 6 * SIGMA)) < 2 * SIGMA


def test_nothing_fires_before_the_minimum_history() -> None:
    policy = DetectorPolicy(min_history=12)
    state = SeriesState()
    for value in [1.0] * 5 + [1000.0] * 7:
        state, finding = observe(state, value, policy)
        assert finding is None
