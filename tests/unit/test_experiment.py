"""A/B experiments: the split, the tallies, the two tests against hand-computed values
and exact enumeration, the group-sequential decision and a seeded simulation."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from agents.experiment import (
    SCORE_BINS,
    Arm,
    ExperimentTally,
    arm_for,
    arm_of,
    conclude,
    look_points,
    mann_whitney_u,
    observe,
    sample_ratio_p,
    two_proportion_z_test,
    variant_of,
)
from schemas.codec import Codec
from schemas.network_events import ExperimentConcluded

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IDS = [f"req-{i}" for i in range(10_000)]


# --- the split -------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.1, 0.5, 0.8])
def test_the_split_follows_the_share(share: float) -> None:
    treated = sum(arm_for(rid, "exp-1", share) == "treatment" for rid in IDS)
    assert abs(treated / len(IDS) - share) < 0.02


def test_the_split_is_stable_and_differs_between_experiments() -> None:
    first = [arm_for(rid, "exp-1", 0.5) for rid in IDS]
    assert first == [arm_for(rid, "exp-1", 0.5) for rid in IDS]
    other = [arm_for(rid, "exp-2", 0.5) for rid in IDS]
    agree = sum(a == b for a, b in zip(first, other, strict=True)) / len(IDS)
    assert 0.45 < agree < 0.55


@pytest.mark.parametrize(("share", "arm"), [(0.0, "control"), (1.0, "treatment")])
def test_extreme_shares(share: float, arm: str) -> None:
    assert {arm_for(rid, "exp-1", share) for rid in IDS[:500]} == {arm}


@pytest.mark.parametrize("share", [-0.1, 1.01, math.nan])
def test_a_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="treatment_share"):
        arm_for("r", "exp-1", share)


@pytest.mark.parametrize(
    ("variant", "arm"),
    [
        ("control", "control"),
        ("treatment:exp-1", "treatment"),
        ("treatment:exp-2", None),
        (None, None),
    ],
)
def test_variants(variant: str | None, arm: Arm | None) -> None:
    assert arm_of(variant, "exp-1") == arm
    if arm is not None:
        assert variant_of(arm, "exp-1") == variant


# --- the tally -------------------------------------------------------------------


def test_observe_counts_in_one_arm_and_leaves_the_old_tally_alone() -> None:
    empty = ExperimentTally()
    one = observe(empty, "treatment", True, 0.8)
    two = observe(one, "treatment", False, 0.8)
    three = observe(two, "control", False, 0.2)
    assert empty.total == 0
    assert (two.treatment.n, two.treatment.passes, two.treatment.mean_score) == (2, 1, 0.8)
    assert two.treatment.histogram == ((800, 2),)
    assert (three.control.n, three.control.pass_rate, three.total) == (1, 0.0, 3)
    assert ExperimentTally.model_validate_json(three.model_dump_json()) == three


def test_scores_are_binned_so_the_tally_stays_bounded() -> None:
    tally = ExperimentTally()
    rng = random.Random(7)
    for _ in range(5000):
        tally = observe(tally, "control", True, rng.random())
    assert tally.control.n == 5000
    assert len(tally.control.histogram) <= SCORE_BINS + 1
    assert [b for b, _ in tally.control.histogram] == sorted(b for b, _ in tally.control.histogram)
    assert sum(c for _, c in tally.control.histogram) == 5000


def test_a_non_finite_score_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        observe(ExperimentTally(), "control", True, math.inf)


# --- two-proportion z-test -------------------------------------------------------


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "z", "p"),
    [
        # pooled 0.525, se = sqrt(.525 * .475 * (1/100 + 1/100)) = 0.070622
        (45, 100, 60, 100, -2.1240, 0.03367),
        (60, 100, 45, 100, 2.1240, 0.03367),
        # pooled 0.5, se = 0.1: z = 2 exactly, p = 2 * (1 - Phi(2)) = 0.04550
        (30, 50, 20, 50, 2.0, 0.04550),
        (50, 100, 50, 100, 0.0, 1.0),
        (0, 10, 0, 20, 0.0, 1.0),
        (10, 10, 20, 20, 0.0, 1.0),
    ],
)
def test_z_test_against_hand_computed_values(
    x1: int, n1: int, x2: int, n2: int, z: float, p: float
) -> None:
    got_z, got_p = two_proportion_z_test(x1, n1, x2, n2)
    assert got_z == pytest.approx(z, abs=1e-4)
    assert got_p == pytest.approx(p, abs=1e-5)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(1, 0, 1, 2), (3, 2, 1, 2), (-1, 5, 1, 5)])
def test_z_test_refuses_impossible_counts(x1: int, n1: int, x2: int, n2: int) -> None:
    with pytest.raises(ValueError, match="need 0 <= x <= n"):
        two_proportion_z_test(x1, n1, x2, n2)


# --- Mann-Whitney U --------------------------------------------------------------


def pair_count(a: list[float], b: list[float]) -> float:
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]),
        ([1, 2, 2, 3], [2, 3, 4, 4]),
        ([0.5, 0.5, 0.5], [0.5, 0.5]),
        ([3.1, 0.2, 9.9, 4.4, 4.4, 1.0], [4.4, 2.2, 0.1]),
    ],
)
def test_u_is_the_number_of_pairs_a_wins(a: list[float], b: list[float]) -> None:
    assert mann_whitney_u(a, b)[0] == pair_count(a, b)


@pytest.mark.parametrize(
    ("a", "b", "u", "p"),
    [
        # no ties: var = 5*5*11/12 = 22.9167, z = (12.5 - 0.5) / 4.7871 = 2.5067
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 0.0, 0.012186),
        # ties: ranks 1, 3, 3 | 3, 5.5, 5.5, 7.5, 7.5; R_a = 12.5, U = 2.5;
        # sum(t^3 - t) = 24 + 6 + 6 = 36, var = 16/12 * (9 - 36/56) = 11.142857,
        # z = (5.5 - 0.5) / 3.338092 = 1.497862
        ([1, 2, 2, 3], [2, 3, 4, 4], 2.5, 0.134169),
        # every value tied: no evidence at all
        ([0.5, 0.5, 0.5], [0.5, 0.5], 3.0, 1.0),
        # U at its mean: the continuity correction keeps p at 1
        ([1, 4], [2, 3], 2.0, 1.0),
    ],
)
def test_u_and_p_against_hand_computed_values(
    a: list[float], b: list[float], u: float, p: float
) -> None:
    got_u, got_p = mann_whitney_u(a, b)
    assert got_u == u
    assert got_p == pytest.approx(p, abs=1e-6)


def exact_two_sided(n1: int, n2: int, u: float) -> float:
    """P(|U - n1*n2/2| >= |u - n1*n2/2|) over every equally likely rank assignment."""
    mean = n1 * n2 / 2
    us = [sum(c) - n1 * (n1 + 1) / 2 for c in itertools.combinations(range(1, n1 + n2 + 1), n1)]
    return sum(abs(x - mean) >= abs(u - mean) - 1e-9 for x in us) / len(us)


@pytest.mark.parametrize(
    ("n1", "n2", "tolerance"),
    [(4, 4, 0.035), (5, 5, 0.02), (6, 6, 0.02), (7, 5, 0.02), (8, 8, 0.012)],
)
def test_the_normal_approximation_tracks_the_exact_distribution(
    n1: int, n2: int, tolerance: float
) -> None:
    ranks = list(range(1, n1 + n2 + 1))
    seen: set[float] = set()
    for chosen in itertools.combinations(ranks, n1):
        a = list(chosen)
        u, p = mann_whitney_u(a, [r for r in ranks if r not in chosen])
        assert u == sum(a) - n1 * (n1 + 1) / 2
        if u not in seen:
            seen.add(u)
            assert p == pytest.approx(exact_two_sided(n1, n2, u), abs=tolerance)
    assert len(seen) == n1 * n2 + 1


def test_the_exact_table_value_for_five_against_five() -> None:
    # Tables of the Mann-Whitney U: for n1 = n2 = 5, P(U <= 0) = 1/252 one-sided.
    assert exact_two_sided(5, 5, 0.0) == pytest.approx(2 / 252)
    assert mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])[1] < 0.05


def test_u_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_u([], [1.0])


@pytest.mark.parametrize(
    ("treated", "total", "share", "low"),
    [(500, 1000, 0.5, False), (560, 1000, 0.5, True), (100, 1000, 0.1, False), (0, 0, 0.5, False)],
)
def test_sample_ratio(treated: int, total: int, share: float, low: bool) -> None:
    assert (sample_ratio_p(treated, total, share) < 0.001) is low


# --- the decision ----------------------------------------------------------------


def tally_of(
    control: tuple[int, int], treatment: tuple[int, int], **scores: float
) -> ExperimentTally:
    """Passing verdicts score ``pass_score``, failing ones ``fail_score`` (per arm)."""
    tally = ExperimentTally()
    arms: tuple[tuple[Arm, tuple[int, int]], ...] = (("control", control), ("treatment", treatment))
    for arm, (n, passes) in arms:
        hi = scores.get(f"{arm}_pass", 0.9)
        lo = scores.get(f"{arm}_fail", 0.3)
        for i in range(n):
            tally = observe(tally, arm, i < passes, hi if i < passes else lo)
    return tally


def decide(
    tally: ExperimentTally,
    *,
    min_samples: int = 100,
    alpha: float = 0.05,
    looks: int = 1,
    max_total: int | None = None,
    treatment_share: float = 0.5,
) -> ExperimentConcluded | None:
    """Conclude with one look at the current total unless told otherwise."""
    return conclude(
        tally,
        min_samples=min_samples,
        alpha=alpha,
        experiment_id="exp-1",
        proposal_id="p-1",
        now=T0,
        event_id="e-1",
        max_total=tally.total if max_total is None else max_total,
        looks=looks,
        treatment_share=treatment_share,
    )


@pytest.mark.parametrize(
    ("control", "treatment", "decision"),
    [
        ((200, 120), (200, 150), "promote"),  # 60% -> 75%: z = 3.2
        ((200, 150), (200, 120), "rollback"),  # significantly worse
        ((200, 120), (200, 120), "rollback"),  # not better by the end
        ((200, 120), (200, 116), "rollback"),
        ((200, 120), (200, 130), "inconclusive"),  # better, not significantly
    ],
)
def test_decisions_at_the_end(
    control: tuple[int, int], treatment: tuple[int, int], decision: str
) -> None:
    result = decide(tally_of(control, treatment))
    assert result is not None
    assert result.decision == decision
    assert (result.control_n, result.control_passes) == control
    assert (result.treatment_n, result.treatment_passes) == treatment
    assert result.effect_size == pytest.approx((treatment[1] - control[1]) / 200)


def test_nothing_is_decided_before_both_arms_reach_min_samples() -> None:
    tally = tally_of((200, 20), (99, 99))
    assert decide(tally, max_total=10_000, looks=10_000) is None
    assert decide(tally_of((200, 20), (100, 100)), max_total=10_000, looks=10_000) is not None


def test_an_arm_short_of_min_samples_at_the_cap_is_inconclusive() -> None:
    result = decide(tally_of((300, 20), (50, 50)), treatment_share=50 / 350)
    assert result is not None
    assert result.decision == "inconclusive"
    assert "fewer than 100" in result.reason


def test_a_broken_split_is_inconclusive() -> None:
    result = decide(tally_of((300, 150), (200, 150)), treatment_share=0.5)
    assert result is not None
    assert (result.decision, result.reason.split(" (")[0]) == (
        "inconclusive",
        "sample ratio mismatch",
    )
    planned = decide(tally_of((300, 150), (200, 150)), treatment_share=0.4)
    assert planned is not None
    assert planned.decision == "promote"


def test_better_pass_rate_with_significantly_lower_scores_is_rolled_back() -> None:
    tally = tally_of(
        (200, 120), (200, 150), treatment_pass=0.75, treatment_fail=0.1, control_fail=0.5
    )
    result = decide(tally)
    assert result is not None
    assert result.decision == "rollback"
    assert result.p_value_pass_rate < 0.05
    assert result.p_value_scores < 0.05
    assert result.treatment_mean_score < result.control_mean_score


def test_between_looks_there_is_no_decision() -> None:
    points = look_points(1000, 5)
    assert points == (200, 400, 600, 800, 1000)
    tally = tally_of((150, 60), (150, 120))  # total 300: between looks
    assert decide(tally, max_total=1000, looks=5) is None
    at_look = tally_of((200, 80), (200, 160))  # total 400: a look
    result = decide(at_look, max_total=1000, looks=5)
    assert result is not None
    assert result.decision == "promote"
    assert "alpha=0.01" in result.reason


def test_interim_looks_only_stop_on_significance() -> None:
    tally = tally_of((200, 120), (200, 122))  # total 400 of 1000: nothing yet
    assert decide(tally, max_total=1000, looks=5) is None


def test_the_event_round_trips_and_carries_both_p_values() -> None:
    result = decide(tally_of((200, 120), (200, 150)))
    assert result is not None
    assert result.request_id == result.experiment_id == "exp-1"
    assert 0 < result.p_value_pass_rate < 0.01
    assert result.p_value_scores == pytest.approx(result.p_value_pass_rate, rel=0.5)
    assert (result.control_mean_score, result.treatment_mean_score) == (0.66, 0.75)
    codec = Codec()
    assert codec.decode(codec.encode(result), ExperimentConcluded) == result


@pytest.mark.parametrize(
    ("min_samples", "alpha", "looks", "max_total"),
    [(0, 0.05, 1, 20), (10, 0.0, 1, 20), (10, 1.0, 1, 20), (10, 0.05, 0, 20), (10, 0.05, 1, 0)],
)
def test_bad_plans_are_refused(min_samples: int, alpha: float, looks: int, max_total: int) -> None:
    with pytest.raises(ValueError, match="need looks"):
        decide(
            tally_of((10, 5), (10, 5)),
            min_samples=min_samples,
            alpha=alpha,
            looks=looks,
            max_total=max_total,
        )


# --- simulation ------------------------------------------------------------------


def simulate(seed: int, treatment_rate: float, control_rate: float) -> str | None:
    """2,000 requests split 50/50, concluded as the stage would: after every verdict."""
    rng = random.Random(seed)
    tally = ExperimentTally()
    for i in range(2000):
        arm = arm_for(f"sim-{seed}-{i}", "exp-sim", 0.5)
        passed = rng.random() < (treatment_rate if arm == "treatment" else control_rate)
        score = rng.uniform(0.7, 1.0) if passed else rng.uniform(0.0, 0.7)
        tally = observe(tally, arm, passed, score)
        result = conclude(
            tally,
            min_samples=100,
            alpha=0.05,
            experiment_id="exp-sim",
            proposal_id="p-sim",
            now=T0,
            event_id=f"e-{seed}",
            max_total=2000,
            looks=5,
        )
        if result is not None:
            return result.decision
    return None


def test_a_real_improvement_is_promoted() -> None:
    decisions = Counter(simulate(seed, 0.70, 0.60) for seed in range(50))
    # Power at the last look is about 98%; every run ends with a decision.
    assert decisions["promote"] >= 47
    assert decisions["rollback"] == 0
    assert None not in decisions


def test_no_difference_is_almost_never_promoted() -> None:
    decisions = Counter(simulate(seed, 0.60, 0.60) for seed in range(50))
    assert decisions["promote"] <= 5
    assert None not in decisions
    assert decisions["rollback"] + decisions["inconclusive"] >= 45
