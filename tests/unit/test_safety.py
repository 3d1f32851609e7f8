"""The safety monitor: every rule, alone and together, with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.config import GuardianPolicy, PipelineConfig
from agents.config_values import KEYS, config_changed, encode, value_of
from agents.safety import RULES, TUNABLE_KEYS, SafetyRules, review
from schemas.network_events import ConfigChanged, ImprovementProposed

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=4)
RULES_ALL_KEYS = SafetyRules(
    tunable_keys=frozenset(TUNABLE_KEYS)
    | {
        "guardian.pii_check",
        "guardian.weight_safety",
        "guardian.weight_alignment",
        "guardian.leak_min_chars",
        "intake.reject_injection",
    }
)


@dataclass(frozen=True)
class Raw:
    """A proposed value given as its JSON text (which may be invalid)."""

    text: str


def proposal(
    key: str, proposed: object, *, kind: str = "threshold", **fields: Any
) -> ImprovementProposed:
    current = fields.pop("current", value_of(CONFIG, key) if key in KEYS else 1.0)
    base: dict[str, Any] = {
        "event_id": "p-event",
        "request_id": "p-1",
        "occurred_at": T0,
        "proposal_id": "p-1",
        "kind": kind,
        "key": key,
        "current_value": encode(current),
        "proposed_value": proposed.text if isinstance(proposed, Raw) else encode(proposed),
    }
    return ImprovementProposed(**{**base, **fields})


def change_at(when: datetime, n: int = 0) -> ConfigChanged:
    return config_changed(CONFIG, CONFIG, changed_by="op", reason="", now=when, event_id=f"c-{n}")


def failed_rules(p: ImprovementProposed, rules: SafetyRules = RULES_ALL_KEYS) -> list[str]:
    reviewed = review(p, CONFIG, [], T0, rules)
    names = [r.split(":", 1)[0] for r in reviewed.reasons]
    return [] if reviewed.approved else names


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (proposal("guardian.pass_threshold", 0.75), []),
        (proposal("guardian.pass_threshold", 0.65), []),
        (proposal("specialist.temperature", 0.5, kind="temperature"), []),
        (proposal("specialist.temperature", 0.0, kind="temperature"), []),
        (proposal("specialist.max_tokens", 512, kind="max_tokens"), []),
        (proposal("specialist.max_tokens", 128, kind="max_tokens"), []),
        (proposal("specialist.system_prompt", "Be kind and exact.", kind="prompt"), []),
        (proposal("refine.max_rounds", 4, kind="max_rounds"), []),
        # a stale proposal from 0.5 is also judged against the live 0.7
        (
            proposal("guardian.pass_threshold", 0.48, current=0.5),
            ["current_value_is_live", "pass_threshold_floor", "step_bounded"],
        ),
        (proposal("guardian.pass_threshold", 0.6), ["step_bounded"]),
        (proposal("guardian.pass_threshold", 0.8), ["step_bounded"]),
        (proposal("guardian.min_alignment", 0.2), ["step_bounded"]),
        (proposal("specialist.temperature", 0.6, kind="temperature"), ["step_bounded"]),
        (proposal("specialist.max_tokens", 513, kind="max_tokens"), ["step_bounded"]),
        (proposal("specialist.max_tokens", 127, kind="max_tokens"), ["step_bounded"]),
        (proposal("refine.max_rounds", 5, kind="max_rounds"), ["step_bounded"]),
        # system parameters: from a worker's own setting only the absolute bound holds
        (proposal("capacity.specialist_concurrency", 16, kind="concurrency"), []),
        (proposal("capacity.specialist_concurrency", 300, kind="concurrency"), ["step_bounded"]),
        (
            proposal("capacity.specialist_concurrency", 9, kind="concurrency", current=4),
            ["current_value_is_live"],
        ),
        (proposal("capacity.priority_guard_every", 4, kind="lane_guard"), []),
        (proposal("capacity.priority_guard_every", 4, kind="concurrency"), ["kind_matches_key"]),
        (proposal("routing.weights", {"a": 0.5, "b": 0.5}, kind="routing_weight"), []),
        (
            proposal("routing.weights", {"a": 0.9}, kind="routing_weight"),
            ["step_bounded"],
        ),
        (proposal("specialist.lessons", {"json": ["Only the object."]}, kind="lesson"), []),
        (
            proposal("specialist.lessons", {"json": ["One.", "Two."]}, kind="lesson"),
            ["step_bounded"],
        ),
        (proposal("specialist.lessons", {"json": ["x" * 301]}, kind="lesson"), ["step_bounded"]),
        (
            proposal("specialist.lessons", {"json": ["Only the object."]}, kind="prompt"),
            ["kind_matches_key"],
        ),
        (proposal("specialist.system_prompt", "x" * 700, kind="prompt"), ["step_bounded"]),
        # safety switches and weights
        (proposal("guardian.pii_check", False, kind="model"), ["safety_checks_on"]),
        (proposal("intake.reject_injection", False, kind="model"), ["safety_checks_on"]),
        (proposal("guardian.leak_min_chars", 60, kind="model"), ["safety_checks_on"]),
        (proposal("guardian.leak_min_chars", 30, kind="model"), []),
        (proposal("guardian.weight_safety", 0.1, kind="model"), ["safety_weight_kept"]),
        (proposal("guardian.weight_safety", 0.3, kind="model"), []),
        (proposal("guardian.weight_alignment", 0.9, kind="model"), ["safety_weight_kept"]),
        (proposal("guardian.weight_alignment", 0.4, kind="model"), []),
        # the key, the kind, the values
        (proposal("routing.weight.gpu-1", 0.5, kind="routing_weight"), ["known_key"]),
        (proposal("intake.max_prompt_chars", 9000, kind="model"), ["tunable_key"]),
        (proposal("specialist.temperature", 0.1, kind="prompt"), ["kind_matches_key"]),
        (proposal("guardian.pass_threshold", 0.75, current=0.65), ["current_value_is_live"]),
        (proposal("guardian.pass_threshold", 0.75, current="x"), ["current_value_is_live"]),
        (
            proposal("guardian.pii_check", False, kind="model", current=1),
            ["current_value_is_live", "safety_checks_on"],
        ),
        (proposal("guardian.pass_threshold", Raw("0.7.5")), ["value_validates"]),
        (proposal("guardian.pass_threshold", Raw("1.5")), ["value_validates"]),
        (proposal("refine.max_rounds", Raw("3.5"), kind="max_rounds"), ["value_validates"]),
        (proposal("guardian.full_alignment", 0.25), ["tunable_key", "value_validates"]),
        (proposal("guardian.pass_threshold", 0.7), ["changes_something"]),
    ],
)
def test_rules(p: ImprovementProposed, expected: list[str]) -> None:
    assert failed_rules(p) == expected


def test_every_failing_rule_is_listed_with_its_reason() -> None:
    p = proposal("guardian.pass_threshold", 0.3, kind="prompt", current=0.65)
    recent = [change_at(T0 - timedelta(minutes=m), m) for m in (1, 2, 3)]
    reviewed = review(p, CONFIG, recent, T0, SafetyRules())
    assert not reviewed.approved
    assert [r.split(":", 1)[0] for r in reviewed.reasons] == [
        "kind_matches_key",
        "current_value_is_live",
        "pass_threshold_floor",
        "step_bounded",
        "rate_limit",
    ]
    assert "the live value is 0.7" in reviewed.reasons[1]
    assert "below the floor 0.5" in reviewed.reasons[2]


def test_an_approval_names_the_rules_and_is_stable() -> None:
    p = proposal("guardian.pass_threshold", 0.75)
    reviewed = review(p, CONFIG, [], T0, SafetyRules())
    assert reviewed.approved
    assert reviewed.reasons == (f"approved: {', '.join(n for n, _ in RULES)} hold",)
    assert reviewed.request_id == reviewed.proposal_id == "p-1"
    assert review(p, CONFIG, [], T0, SafetyRules()) == reviewed


def test_safety_keys_are_not_tunable_by_default() -> None:
    p = proposal("guardian.weight_safety", 0.3, kind="model")
    assert failed_rules(p, SafetyRules()) == ["tunable_key"]


@pytest.mark.parametrize(
    ("ages_minutes", "max_changes", "approved"),
    [
        ((), 3, True),
        ((1, 10), 3, True),
        ((1, 10, 59), 3, False),
        ((1, 10, 60, 120), 3, True),  # exactly an hour ago is outside the window
        ((0,), 1, False),
        ((-5, -6, -7), 3, True),  # changes after `now` (clock skew) are not counted
    ],
)
def test_rate_limit(ages_minutes: tuple[int, ...], max_changes: int, approved: bool) -> None:
    recent = [change_at(T0 - timedelta(minutes=m), i) for i, m in enumerate(ages_minutes)]
    rules = SafetyRules(max_changes=max_changes)
    reviewed = review(proposal("guardian.pass_threshold", 0.75), CONFIG, recent, T0, rules)
    assert reviewed.approved is approved


def test_the_floor_holds_for_a_small_step() -> None:
    near = CONFIG.model_copy(update={"guardian": GuardianPolicy(pass_threshold=0.52)})
    down = proposal("guardian.pass_threshold", 0.49, current=0.52)
    reasons = review(down, near, [], T0, SafetyRules()).reasons
    assert [r.split(":", 1)[0] for r in reasons] == ["pass_threshold_floor"]
    assert review(down, near, [], T0, SafetyRules(min_pass_threshold=0.45)).approved


def test_a_threshold_already_below_the_floor_may_rise() -> None:
    low = CONFIG.model_copy(update={"guardian": GuardianPolicy(pass_threshold=0.4)})
    up = proposal("guardian.pass_threshold", 0.45, current=0.4)
    down = proposal("guardian.pass_threshold", 0.38, current=0.4)
    assert review(up, low, [], T0, SafetyRules()).approved
    reasons = review(down, low, [], T0, SafetyRules()).reasons
    assert [r.split(":", 1)[0] for r in reasons] == ["pass_threshold_floor"]


def test_the_reason_for_a_bad_value_quotes_the_validator() -> None:
    reviewed = review(
        proposal("specialist.max_tokens", 0, kind="max_tokens"), CONFIG, [], T0, SafetyRules()
    )
    assert not reviewed.approved
    assert any(
        "specialist.max_tokens" in r and "greater than or equal to 1" in r for r in reviewed.reasons
    )


@pytest.mark.parametrize(("proposed", "approved"), [(8, True), (2, True), (9, False), (1, False)])
def test_a_set_capacity_moves_at_most_by_half_or_double(proposed: int, approved: bool) -> None:
    config = CONFIG.model_copy(
        update={"capacity": CONFIG.capacity.model_copy(update={"specialist_concurrency": 4})}
    )
    p = proposal("capacity.specialist_concurrency", proposed, kind="concurrency", current=4)
    assert review(p, config, [], T0, SafetyRules()).approved is approved


def test_routing_weights_never_all_go_to_zero() -> None:
    config = CONFIG.model_copy(
        update={"routing": CONFIG.routing.model_copy(update={"weights": {"a": 0.4, "b": 0.2}})}
    )
    p = proposal(
        "routing.weights", {"a": 0.0, "b": 0.0}, kind="routing_weight", current={"a": 0.4, "b": 0.2}
    )
    reviewed = review(p, config, [], T0, SafetyRules())
    assert not reviewed.approved
    assert any("would be zero" in r for r in reviewed.reasons)
