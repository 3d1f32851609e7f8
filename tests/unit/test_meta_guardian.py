"""The meta-guardian: calibration against feedback, quality drift, threshold proposals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.config import GuardianPolicy, PipelineConfig
from agents.meta_guardian import (
    OVERALL,
    MetaRules,
    accuracy_drops,
    calibrate,
    delivered,
    drift,
    propose_threshold,
    ratings,
    satisfaction,
)
from agents.safety import SafetyRules, review
from schemas.request_events import FeedbackGiven, GuardianScore, VerdictIssued

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=4)
GUARDIANS = ("alignment", "completeness", "format", "safety")


def verdict(rid: str, passed: bool, score: float, *classes: str, **fields: Any) -> VerdictIssued:
    failing = set(fields.pop("failing", ()))
    base: dict[str, Any] = {
        "event_id": f"v-{rid}-{fields.get('round', 1)}",
        "request_id": rid,
        "occurred_at": T0,
        "config_version": 4,
        "task_id": f"{rid}/main/1",
        "round": 1,
        "answer_event_id": f"a-{rid}",
        "passed": passed,
        "score": score,
        "threshold": 0.7,
        "scores": tuple(
            GuardianScore(guardian=g, score=0.0 if g in failing else 1.0, passed=g not in failing)
            for g in GUARDIANS
        ),
        "failure_classes": classes or (() if passed else ("low_score",)),
    }
    return VerdictIssued(**{**base, **fields})


def rating(rid: str, value: float | None, *, minutes: int = 0, **fields: Any) -> FeedbackGiven:
    return FeedbackGiven(
        event_id=f"f-{rid}-{minutes}",
        request_id=rid,
        occurred_at=T0 + timedelta(minutes=minutes),
        kind=fields.pop("kind", "explicit"),
        rating=value,
        **fields,
    )


def by_name(verdicts: list[VerdictIssued], feedback: list[FeedbackGiven]) -> dict[str, Any]:
    return {c.guardian: c for c in calibrate(verdicts, feedback)}


# --- calibration -----------------------------------------------------------------


def test_calibration_counts_agreement_false_passes_and_false_fails() -> None:
    verdicts = [
        verdict("r1", True, 0.9),  # user happy: agree
        verdict("r2", True, 0.8),  # user unhappy: false pass
        verdict("r3", False, 0.5, "low_alignment", failing={"alignment"}),  # unhappy: agree
        verdict("r4", False, 0.6),  # user happy: false fail
        verdict("r5", True, 0.95),  # no feedback
    ]
    feedback = [rating("r1", 1.0), rating("r2", 0.2), rating("r3", 0.0), rating("r4", 0.5)]
    cal = by_name(verdicts, feedback)
    overall = cal[OVERALL]
    assert (overall.verdicts, overall.passes, overall.rated, overall.agreements) == (5, 3, 4, 2)
    assert (overall.pass_rate, overall.agreement) == (0.6, 0.5)
    assert (overall.false_pass_rate, overall.false_fail_rate) == (0.5, 0.5)
    alignment = cal["alignment"]
    assert (alignment.passes, alignment.rated_passes, alignment.false_passes) == (4, 3, 1)
    assert alignment.false_fail_rate == 0.0
    assert list(cal) == [OVERALL, *sorted(GUARDIANS)]


def test_calibration_joins_the_delivered_verdict_and_skips_model_errors() -> None:
    verdicts = [
        verdict("r1", False, 0.4, round=1),
        verdict("r1", True, 0.8, round=2),
        verdict("r1", True, 0.8, round=3),
        verdict("r2", False, 0.0, "model_error", "timeout", scores=()),
    ]
    final = delivered(verdicts)
    assert final["r1"].round == 2
    assert "r2" not in final
    overall = by_name(verdicts, [rating("r1", 0.1), rating("r2", 1.0)])[OVERALL]
    assert (overall.verdicts, overall.rated, overall.false_passes) == (3, 1, 1)


def test_ratings_keep_the_latest_explicit_rating() -> None:
    feedback = [
        rating("r1", 0.9, minutes=1),
        rating("r1", 0.1, minutes=5),
        rating("r1", 0.8, minutes=3),
        rating("r2", None),
        rating("r3", None, kind="implicit", signal="copied"),
        rating("r4", 0.7),
    ]
    assert ratings(feedback) == {"r1": 0.1, "r4": 0.7}


def test_no_feedback_gives_zero_rates_not_errors() -> None:
    overall = by_name([verdict("r1", True, 0.9)], [])[OVERALL]
    assert (overall.rated, overall.agreement, overall.false_pass_rate) == (0, 0.0, 0.0)


# --- drift -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "recent", "degraded"),
    [
        ([0.8] * 30, [0.76] * 30, True),  # exactly 5% below
        ([0.8] * 30, [0.761] * 30, False),
        ([0.8] * 30, [0.5] * 30, True),
        ([0.8] * 30, [0.9] * 30, False),
        ([0.8] * 29, [0.5] * 30, False),  # too little baseline
        ([0.8] * 30, [0.5] * 29, False),
        ([0.0] * 30, [0.0] * 30, False),
    ],
)
def test_drift_flags_a_drop_of_five_percent(
    baseline: list[float], recent: list[float], degraded: bool
) -> None:
    result = drift("guardian_score", baseline, recent)
    assert result.degraded is degraded
    assert (result.baseline_n, result.recent_n) == (len(baseline), len(recent))


def test_drift_reports_the_relative_change() -> None:
    result = drift("guardian_score", [0.6, 1.0], [0.4, 0.6], min_samples=2)
    assert (result.baseline_mean, result.recent_mean) == (0.8, 0.5)
    assert result.relative_change == pytest.approx(-0.375)
    assert result.degraded


# --- threshold proposals ---------------------------------------------------------


SCORES = {"happy_pass": 0.9, "unhappy_pass": 0.72, "happy_fail": 0.67, "unhappy_fail": 0.5}


def population(
    counts: tuple[int, int, int, int],
    scores: dict[str, float] | None = None,
    fail_classes: tuple[str, ...] = ("low_score",),
) -> tuple[list[VerdictIssued], list[FeedbackGiven]]:
    """Rated verdicts: happy passes, unhappy passes, happy failures, unhappy failures,
    each group at its own score (``SCORES``, overridable); failures fail on
    ``fail_classes`` (a score-only failure by default)."""
    scores = {**SCORES, **(scores or {})}
    happy_pass, unhappy_pass, happy_fail, unhappy_fail = counts
    groups = [
        ("happy_pass", happy_pass, True, 1.0),
        ("unhappy_pass", unhappy_pass, True, 0.0),
        ("happy_fail", happy_fail, False, 1.0),
        ("unhappy_fail", unhappy_fail, False, 0.0),
    ]
    verdicts, feedback = [], []
    for name, count, passed, value in groups:
        for i in range(count):
            rid = f"{name}-{i}"
            verdicts.append(verdict(rid, passed, scores[name], *(() if passed else fail_classes)))
            feedback.append(rating(rid, value))
    return verdicts, feedback


def test_many_disappointing_passes_raise_the_threshold() -> None:
    verdicts, feedback = population((30, 20, 5, 5))
    (p,) = propose_threshold(verdicts, feedback, CONFIG, T0)
    assert (p.kind, p.key, p.current_value, p.proposed_value) == (
        "threshold",
        "guardian.pass_threshold",
        "0.7",
        "0.75",
    )
    assert p.proposed_by == "meta-guardian"
    assert p.diagnosis_id is None
    assert "40% of 50 rated passing answers" in p.rationale
    assert review(p, CONFIG, [], T0, SafetyRules()).approved


def test_many_satisfying_score_only_failures_lower_the_threshold() -> None:
    verdicts, feedback = population((40, 5, 20, 5))
    (p,) = propose_threshold(verdicts, feedback, CONFIG, T0)
    assert p.proposed_value == "0.65"
    assert "safety gates unchanged" in p.rationale
    assert review(p, CONFIG, [], T0, SafetyRules()).approved


@pytest.mark.parametrize(
    ("counts", "options"),
    [
        ((30, 20, 5, 5), {"unhappy_pass": 0.8}),  # a raise to 0.75 would catch none of them
        ((30, 20, 5, 5), {"happy_pass": 0.72}),  # it would lose more than it catches
        ((40, 5, 20, 5), {"pii": 1.0}),  # hard-gate failures stay failures
        ((40, 5, 20, 5), {"happy_fail": 0.6}),  # below the lowered bar too
        ((40, 5, 10, 15), {"unhappy_fail": 0.68}),  # lowering would spoil more than it fixes
        ((10, 5, 20, 5), {}),  # fewer than 50 rated answers
        ((45, 3, 3, 9), {}),  # well calibrated
    ],
)
def test_no_proposal(counts: tuple[int, int, int, int], options: dict[str, float]) -> None:
    classes = ("pii",) if "pii" in options else ("low_score",)
    scores = {k: v for k, v in options.items() if k != "pii"}
    verdicts, feedback = population(counts, scores, classes)
    assert propose_threshold(verdicts, feedback, CONFIG, T0) == []


@pytest.mark.parametrize(
    ("threshold", "counts", "scores"),
    [
        (0.95, (30, 20, 5, 5), {"happy_pass": 1.0, "unhappy_pass": 0.96}),
        (0.5, (40, 5, 20, 5), {"happy_fail": 0.48, "unhappy_fail": 0.3}),
    ],
)
def test_the_threshold_stays_within_ceiling_and_floor(
    threshold: float, counts: tuple[int, int, int, int], scores: dict[str, float]
) -> None:
    config = CONFIG.model_copy(update={"guardian": GuardianPolicy(pass_threshold=threshold)})
    verdicts, feedback = population(counts, scores)
    verdicts = [v.model_copy(update={"threshold": threshold}) for v in verdicts]
    assert propose_threshold(verdicts, feedback, config, T0) == []
    looser = MetaRules(ceiling=1.0, floor=0.4)
    (p,) = propose_threshold(verdicts, feedback, config, T0, looser)
    assert p.proposed_value == ("1.0" if threshold == 0.95 else "0.45")


def test_disappointing_passes_come_before_strictness() -> None:
    verdicts, feedback = population((30, 10, 20, 5))  # 25% false passes, 80% false fails
    (p,) = propose_threshold(verdicts, feedback, CONFIG, T0)
    assert p.proposed_value == "0.75"


def test_only_verdicts_under_the_live_threshold_count() -> None:
    verdicts, feedback = population((30, 20, 5, 5))
    old = [v.model_copy(update={"threshold": 0.65}) for v in verdicts]
    assert propose_threshold(old, feedback, CONFIG, T0) == []


def test_the_proposal_id_is_stable() -> None:
    verdicts, feedback = population((30, 20, 5, 5))
    first = propose_threshold(verdicts, feedback, CONFIG, T0)
    again = propose_threshold(list(reversed(verdicts)), feedback, CONFIG, T0 + timedelta(hours=1))
    assert [p.proposal_id for p in first] == [p.proposal_id for p in again]
    assert first[0].request_id == first[0].proposal_id


def _fb(
    rid: str, at: datetime, *, rating: float | None = None, signal: str | None = None
) -> FeedbackGiven:
    return FeedbackGiven(
        event_id=f"{rid}-{at.timestamp()}-{rating}-{signal}",
        request_id=rid,
        occurred_at=at,
        kind="explicit" if rating is not None else "implicit",
        rating=rating,
        signal=signal,
    )


def test_satisfaction_prefers_the_latest_explicit_rating_over_signals() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    got = satisfaction(
        [
            _fb("a", t0, signal="copied"),
            _fb("a", t0 + timedelta(seconds=1), rating=0.2),
            _fb("b", t0, signal="regenerated"),
            _fb("c", t0, rating=0.1),
            _fb("c", t0 + timedelta(seconds=2), rating=0.9),
            _fb("d", t0 - timedelta(days=1), rating=1.0),
        ],
        t0,
        t0 + timedelta(hours=1),
    )
    assert got == {"a": 0.2, "b": 0.0, "c": 0.9}


def test_a_five_percent_accuracy_drop_is_one_recommendation_per_specialist() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    window = timedelta(minutes=10)
    verdicts = [
        verdict(f"r{i}", True, 0.9, specialist="general" if i % 2 else "qa") for i in range(80)
    ]
    feedback = [
        _fb(f"r{i}", now - window - timedelta(minutes=5), rating=0.9) for i in range(40)
    ] + [
        # recent: "general" users unhappy (odd ids), "qa" users still happy
        _fb(f"r{i}", now - timedelta(minutes=5), rating=0.1 if i % 2 else 0.9)
        for i in range(40, 80)
    ]
    drops = accuracy_drops(verdicts, feedback, now, window, min_samples=10)
    assert [d.metric for d in drops] == ["accuracy.general"]
    assert drops[0].baseline_mean == pytest.approx(1.0)
    assert drops[0].recent_mean == pytest.approx(0.0)
    assert accuracy_drops(verdicts, feedback, now, window, min_samples=25) == []
