"""The diagnostician: failure classes, windowed counts, thresholds, evidence, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.diagnosis import (
    MAX_EXAMPLES,
    MAX_LATENESS,
    DiagnosisWindow,
    closed,
    diagnose,
    failure_classes,
    next_window,
    observe,
    open_window,
    window_at,
)
from schemas.codec import Codec
from schemas.network_events import FailureDiagnosed
from schemas.request_events import VerdictIssued

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIVE_MIN = timedelta(minutes=5)


def verdict(n: int, *classes: str, **fields: Any) -> VerdictIssued:
    base: dict[str, Any] = {
        "event_id": f"v-{n}",
        "request_id": f"req-{n}",
        "occurred_at": T0 + timedelta(seconds=n),
        "config_version": 4,
        "task_id": f"req-{n}/main/1",
        "round": 1,
        "answer_event_id": f"a-{n}",
        "passed": not classes,
        "score": 0.9 if not classes else 0.3,
        "threshold": 0.7,
        "failure_classes": classes,
        "specialist": "general",
        "deployment": "smollm2-cpu",
        "model": "smollm2",
    }
    return VerdictIssued(**{**base, **fields})


def window_of(verdicts: list[VerdictIssued]) -> DiagnosisWindow:
    window = open_window(T0, FIVE_MIN)
    for v in verdicts:
        window = observe(window, v)
    return window


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ((), ()),
        (("model_error", "timeout"), ("timeout",)),
        (("model_error", "rate_limited"), ("rate_limited",)),
        (("model_error", "unavailable"), ("unavailable",)),
        (("model_error", "circuit_open"), ("unavailable",)),
        (("model_error", "bad_response"), ("model_error",)),
        (("low_alignment",), ("low_alignment",)),
        (("pii", "leak"), ("safety",)),
        (("refusal",), ("safety",)),
        (("format", "pii"), ("format", "safety")),
        (("incomplete",), ("incomplete",)),
        (("empty",), ("empty",)),
        (("low_score",), ("low_score",)),
        (("brand_new",), ("brand_new",)),
    ],
)
def test_failure_classes_map_to_the_diagnosis_vocabulary(
    classes: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert failure_classes(verdict(1, *classes)) == expected


def test_a_failing_verdict_without_classes_is_a_low_score() -> None:
    assert failure_classes(verdict(1, passed=False)) == ("low_score",)


def test_a_group_over_both_thresholds_is_diagnosed_with_its_evidence() -> None:
    verdicts = [verdict(i, "format") for i in range(6)] + [verdict(i) for i in range(6, 20)]
    window = window_of(verdicts)
    (d,) = diagnose(window, T0 + FIVE_MIN)
    assert (d.failure_class, d.failures, d.total, d.rate) == ("format", 6, 20, 0.3)
    assert (d.specialist, d.model, d.prompt_version, d.config_version) == (
        "general",
        "smollm2",
        "",
        4,
    )
    assert d.example_request_ids == tuple(sorted(f"req-{i}" for i in range(6))[:MAX_EXAMPLES])
    assert (d.window_start, d.window_end) == (T0, T0 + FIVE_MIN)
    assert d.request_id == d.diagnosis_id
    assert d.summary.startswith("format: 6 of 20 verdicts (30%) for general/smollm2")


@pytest.mark.parametrize(
    ("failures", "passes", "min_failures", "min_rate", "diagnosed"),
    [
        (5, 15, 5, 0.2, True),  # exactly at both thresholds
        (4, 0, 5, 0.2, False),  # too few failures, whatever the rate
        (5, 21, 5, 0.2, False),  # 5/26 < 20%
        (10, 10, 5, 0.5, True),
        (10, 11, 5, 0.5, False),
        (1, 0, 1, 0.0, True),
    ],
)
def test_thresholds(
    failures: int, passes: int, min_failures: int, min_rate: float, diagnosed: bool
) -> None:
    verdicts = [verdict(i, "incomplete") for i in range(failures)]
    verdicts += [verdict(100 + i) for i in range(passes)]
    found = diagnose(window_of(verdicts), T0, min_failures=min_failures, min_rate=min_rate)
    assert bool(found) is diagnosed


def test_groups_are_separate_by_model_and_config_version() -> None:
    verdicts = [verdict(i, "format") for i in range(5)]
    verdicts += [verdict(10 + i, "format", model="qwen") for i in range(5)]
    verdicts += [verdict(20 + i, "format", config_version=5) for i in range(4)]
    found = diagnose(window_of(verdicts), T0)
    assert [(d.model, d.config_version, d.failures, d.total) for d in found] == [
        ("qwen", 4, 5, 5),
        ("smollm2", 4, 5, 5),
    ]


def test_one_verdict_counts_once_per_class_and_every_class_is_diagnosed() -> None:
    verdicts = [verdict(i, "pii", "leak", "incomplete") for i in range(5)]
    found = diagnose(window_of(verdicts), T0)
    assert [(d.failure_class, d.failures, d.total) for d in found] == [
        ("incomplete", 5, 5),
        ("safety", 5, 5),
    ]


def test_treatment_arms_and_strays_are_not_counted() -> None:
    window = window_of([verdict(1, "format"), verdict(6, "format")])
    window = observe(window, verdict(2, "format", variant="treatment:exp-1"))
    window = observe(window, verdict(3, "format", occurred_at=T0 + FIVE_MIN))
    window = observe(window, verdict(4, "format", occurred_at=T0 - timedelta(seconds=1)))
    window = observe(window, verdict(5, "format", variant="control"))
    assert [g.total for g in window.groups] == [3]


def test_windows_are_aligned_to_the_epoch_and_close_after_their_lateness() -> None:
    at = datetime(2026, 3, 1, 12, 7, 31, tzinfo=UTC)
    window = window_at(at, FIVE_MIN)
    assert (window.start, window.end) == (
        at.replace(minute=5, second=0),
        at.replace(minute=10, second=0),
    )
    assert window_at(window.start, FIVE_MIN) == window
    assert not closed(window, window.end + MAX_LATENESS - timedelta(milliseconds=1))
    assert closed(window, window.end + MAX_LATENESS)
    short = window_at(at, timedelta(seconds=2))
    assert closed(short, short.end + timedelta(seconds=2)), "lateness is at most the length"


def test_examples_are_distinct_requests() -> None:
    verdicts = [verdict(i, "format", request_id="req-x", round=i + 1) for i in range(5)]
    (d,) = diagnose(window_of(verdicts), T0)
    assert d.failures == 5
    assert d.example_request_ids == ("req-x",)


def test_diagnoses_are_deterministic_and_ids_differ_by_window_and_class() -> None:
    verdicts = [verdict(i, "format", "low_alignment") for i in range(5)]
    first = diagnose(window_of(verdicts), T0 + FIVE_MIN)
    again = diagnose(window_of(list(reversed(verdicts))), T0 + FIVE_MIN)
    assert [d.model_dump() for d in first] == [d.model_dump() for d in again]
    assert len({d.diagnosis_id for d in first}) == 2
    later = next_window(open_window(T0, FIVE_MIN))
    shifted = [
        verdict(i, "format", occurred_at=later.start + timedelta(seconds=i)) for i in range(5)
    ]
    for v in shifted:
        later = observe(later, v)
    (moved,) = diagnose(later, later.end)
    assert moved.diagnosis_id not in {d.diagnosis_id for d in first}
    assert (later.start, later.end) == (T0 + FIVE_MIN, T0 + 2 * FIVE_MIN)


def test_observe_leaves_the_old_window_unchanged() -> None:
    window = open_window(T0, FIVE_MIN)
    after = observe(window, verdict(1, "format"))
    assert window.groups == ()
    assert after.groups[0].total == 1


def test_the_window_and_its_diagnoses_serialize() -> None:
    window = window_of([verdict(i, "empty") for i in range(5)])
    assert DiagnosisWindow.model_validate_json(window.model_dump_json()) == window
    (d,) = diagnose(window, T0)
    codec = Codec()
    assert codec.decode(codec.encode(d), FailureDiagnosed) == d
