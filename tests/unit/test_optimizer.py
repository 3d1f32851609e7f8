"""The optimizer: one rule per failure class, concrete changes, nothing stale or unsafe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.config import PipelineConfig, SpecialistProfile
from agents.config_values import apply_change, value_of
from agents.optimizer import (
    ALIGNMENT_SENTENCE,
    FORMAT_SENTENCE,
    MAX_PROMPT_CHARS,
    MAX_TOKENS_CAP,
    SAFETY_SENTENCE,
    propose,
)
from agents.safety import SafetyRules, review
from schemas.network_events import FailureDiagnosed

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=4)


def diagnosis(failure_class: str, **fields: Any) -> FailureDiagnosed:
    base: dict[str, Any] = {
        "event_id": "d-event",
        "request_id": "d-1",
        "occurred_at": T0,
        "config_version": 4,
        "diagnosis_id": "d-1",
        "window_start": T0,
        "window_end": T0,
        "specialist": "general",
        "model": "smollm2",
        "prompt_version": "",
        "failure_class": failure_class,
        "failures": 12,
        "total": 40,
        "rate": 0.3,
    }
    return FailureDiagnosed(**{**base, **fields})


def with_specialist(**fields: Any) -> PipelineConfig:
    return CONFIG.model_copy(update={"specialist": SpecialistProfile(**fields)})


@pytest.mark.parametrize(
    ("failure_class", "expected"),
    [
        ("format", [("prompt", "specialist.system_prompt")]),
        (
            "low_alignment",
            [("temperature", "specialist.temperature"), ("prompt", "specialist.system_prompt")],
        ),
        ("incomplete", [("max_tokens", "specialist.max_tokens")]),
        ("timeout", [("max_tokens", "specialist.max_tokens")]),
        ("safety", [("prompt", "specialist.system_prompt")]),
        ("unavailable", []),
        ("rate_limited", []),
        ("low_score", []),
        ("empty", []),
        ("model_error", []),
    ],
)
def test_each_class_gets_its_kind_of_change(
    failure_class: str, expected: list[tuple[str, str]]
) -> None:
    found = propose(diagnosis(failure_class), CONFIG, T0)
    assert [(p.kind, p.key) for p in found] == expected
    assert all(p.proposed_by == "optimizer" and p.diagnosis_id == "d-1" for p in found)


@pytest.mark.parametrize(
    ("failure_class", "key", "before", "after"),
    [
        ("low_alignment", "specialist.temperature", 0.2, 0.1),
        ("incomplete", "specialist.max_tokens", 256, 384),
        ("timeout", "specialist.max_tokens", 256, 192),
    ],
)
def test_numeric_changes(failure_class: str, key: str, before: object, after: object) -> None:
    (p, *_) = propose(diagnosis(failure_class), CONFIG, T0)
    assert p.key == key
    assert (json.loads(p.current_value), json.loads(p.proposed_value)) == (before, after)


@pytest.mark.parametrize(
    ("failure_class", "sentence"),
    [
        ("format", FORMAT_SENTENCE),
        ("low_alignment", ALIGNMENT_SENTENCE),
        ("safety", SAFETY_SENTENCE),
    ],
)
def test_prompt_changes_append_one_sentence(failure_class: str, sentence: str) -> None:
    (p,) = [p for p in propose(diagnosis(failure_class), CONFIG, T0) if p.kind == "prompt"]
    old = CONFIG.specialist.system_prompt
    assert json.loads(p.current_value) == old
    assert json.loads(p.proposed_value) == f"{old} {sentence}"


@pytest.mark.parametrize(
    ("failure_class", "config"),
    [
        ("format", with_specialist(system_prompt=f"Be brief. {FORMAT_SENTENCE}")),
        ("format", with_specialist(system_prompt="x" * (MAX_PROMPT_CHARS - 10))),
        ("incomplete", with_specialist(max_tokens=MAX_TOKENS_CAP)),
        ("timeout", with_specialist(max_tokens=64)),
    ],
)
def test_nothing_is_proposed_when_the_change_is_done_or_impossible(
    failure_class: str, config: PipelineConfig
) -> None:
    config = config.model_copy(update={"version": 4})
    assert propose(diagnosis(failure_class), config, T0) == []


def test_alignment_at_zero_temperature_only_changes_the_prompt() -> None:
    config = with_specialist(temperature=0.0).model_copy(update={"version": 4})
    assert [p.kind for p in propose(diagnosis("low_alignment"), config, T0)] == ["prompt"]


def test_max_tokens_growth_is_capped() -> None:
    config = with_specialist(max_tokens=MAX_TOKENS_CAP - 100).model_copy(update={"version": 4})
    (p,) = propose(diagnosis("incomplete"), config, T0)
    assert json.loads(p.proposed_value) == MAX_TOKENS_CAP


@pytest.mark.parametrize(
    "fields",
    [{"config_version": 3}, {"prompt_version": "v0"}],
)
def test_a_stale_diagnosis_gets_no_proposal(fields: dict[str, Any]) -> None:
    assert propose(diagnosis("format", **fields), CONFIG, T0) == []


def test_proposals_are_deterministic_and_distinct() -> None:
    first = propose(diagnosis("low_alignment"), CONFIG, T0)
    again = propose(diagnosis("low_alignment"), CONFIG, T0)
    assert first == again
    assert len({p.proposal_id for p in first}) == 2
    assert all(p.request_id == p.proposal_id for p in first)


@pytest.mark.parametrize(
    "failure_class", ["format", "low_alignment", "incomplete", "timeout", "safety"]
)
def test_every_proposal_passes_the_safety_monitor_and_applies(failure_class: str) -> None:
    for p in propose(diagnosis(failure_class), CONFIG, T0):
        reviewed = review(p, CONFIG, [], T0, SafetyRules())
        assert reviewed.approved, reviewed.reasons
        new = apply_change(CONFIG, p.key, p.proposed_value)
        assert value_of(new, p.key) == json.loads(p.proposed_value)
        assert new.guardian == CONFIG.guardian
