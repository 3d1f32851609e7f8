"""The safety monitor: the gate every proposed config change passes before any live
traffic sees it. Explicit rules; a rejection names every rule that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agents.config import GuardianPolicy, PipelineConfig
from agents.config_values import (
    KEYS,
    ConfigValueError,
    apply_change,
    decode,
    holds,
    value_of,
)
from agents.ids import stable_id
from schemas.network_events import ConfigChanged, ImprovementProposed, ProposalReviewed

TUNABLE_KEYS = frozenset(
    {
        "specialist.system_prompt",
        "specialist.temperature",
        "specialist.max_tokens",
        "guardian.pass_threshold",
        "guardian.min_alignment",
        "refine.max_rounds",
        "capacity.specialist_concurrency",
        "capacity.priority_guard_every",
        "routing.weights",
        "specialist.lessons",
    }
)
"""Keys the improvement loop may change; everything else is an operator's decision."""

KIND_OF_KEY = {
    "specialist.system_prompt": "prompt",
    "specialist.temperature": "temperature",
    "specialist.max_tokens": "max_tokens",
    "specialist.name": "model",
    "guardian.pass_threshold": "threshold",
    "guardian.min_alignment": "threshold",
    "guardian.full_alignment": "threshold",
    "capacity.specialist_concurrency": "concurrency",
    "capacity.priority_guard_every": "lane_guard",
    "routing.weights": "routing_weight",
    "refine.max_rounds": "max_rounds",
    "specialist.lessons": "lesson",
}
THRESHOLD_KEYS = ("guardian.pass_threshold", "guardian.min_alignment", "guardian.full_alignment")


@dataclass(frozen=True)
class SafetyRules:
    min_pass_threshold: float = 0.5
    """``guardian.pass_threshold`` is never lowered below this."""
    max_temperature_step: float = 0.3
    max_tokens_factor: float = 2.0
    """``specialist.max_tokens`` may at most double or halve in one change."""
    max_threshold_step: float = 0.05
    max_rounds_step: int = 1
    max_capacity_factor: float = 2.0
    """A capacity key may at most double or halve in one change."""
    max_concurrency: int = 256
    """The most model-call slots per worker a proposal may set (from a worker's own
    setting, not known here, this is the only bound)."""
    max_weight_step: float = 0.5
    """No deployment's routing weight moves by more than this in one change."""
    max_lesson_chars: int = 300
    max_lessons_per_scope: int = 5
    max_prompt_delta_chars: int = 500
    max_changes: int = 3
    """Config changes allowed within ``rate_window`` before new approvals wait."""
    rate_window: timedelta = timedelta(hours=1)
    tunable_keys: frozenset[str] = field(default=TUNABLE_KEYS)


@dataclass(frozen=True)
class _Case:
    proposal: ImprovementProposed
    config: PipelineConfig
    new: PipelineConfig | None
    """The configuration after the change; None when the change does not validate."""
    invalid: str | None
    """Why the change does not validate."""
    rules: SafetyRules
    recent: Sequence[ConfigChanged]
    now: datetime


Rule = Callable[[_Case], str | None]
"""A rule returns why it failed, or None when it holds (or does not apply)."""


def review(
    proposal: ImprovementProposed,
    config: PipelineConfig,
    recent_changes: Sequence[ConfigChanged],
    now: datetime,
    rules: SafetyRules,
) -> ProposalReviewed:
    """Approve ``proposal`` when every rule holds; otherwise reject it with every failure."""
    new, invalid = _applied(proposal, config)
    case = _Case(proposal, config, new, invalid, rules, recent_changes, now)
    failures = [f"{name}: {why}" for name, rule in RULES if (why := rule(case)) is not None]
    approved = not failures
    reasons = failures or [f"approved: {', '.join(name for name, _ in RULES)} hold"]
    return ProposalReviewed(
        event_id=stable_id(proposal.proposal_id, "review"),
        request_id=proposal.proposal_id,
        occurred_at=now,
        config_version=config.version,
        proposal_id=proposal.proposal_id,
        approved=approved,
        reasons=tuple(reasons),
    )


def _applied(
    proposal: ImprovementProposed, config: PipelineConfig
) -> tuple[PipelineConfig | None, str | None]:
    try:
        return apply_change(config, proposal.key, proposal.proposed_value), None
    except ConfigValueError as exc:
        return None, str(exc)


def known_key(c: _Case) -> str | None:
    return None if c.proposal.key in KEYS else f"{c.proposal.key!r} is not a config key"


def tunable_key(c: _Case) -> str | None:
    if c.proposal.key in c.rules.tunable_keys or c.proposal.key not in KEYS:
        return None
    return f"{c.proposal.key} is not among the keys the improvement loop may change"


def kind_matches_key(c: _Case) -> str | None:
    expected = KIND_OF_KEY.get(c.proposal.key)
    if expected is None or expected == c.proposal.kind:
        return None
    return f"a change of {c.proposal.key} is a {expected!r} change, not {c.proposal.kind!r}"


def current_value_is_live(c: _Case) -> str | None:
    key = c.proposal.key
    if key not in KEYS or holds(c.config, key, c.proposal.current_value):
        return None
    try:
        claimed = decode(key, c.proposal.current_value)
    except ConfigValueError as exc:
        return str(exc)
    live = value_of(c.config, key)
    return f"stale: the proposal starts from {claimed!r}, the live value is {live!r}"


def value_validates(c: _Case) -> str | None:
    return None if c.proposal.key not in KEYS else c.invalid


def changes_something(c: _Case) -> str | None:
    if c.new is None or c.new != c.config:
        return None
    return "the proposed value is the live value"


def pass_threshold_floor(c: _Case) -> str | None:
    if c.new is None:
        return None
    old, new = c.config.guardian.pass_threshold, c.new.guardian.pass_threshold
    if new >= old or new >= c.rules.min_pass_threshold:
        return None
    return f"pass_threshold {new} would be below the floor {c.rules.min_pass_threshold}"


def _safety_share(g: GuardianPolicy) -> float:
    total = g.weight_alignment + g.weight_completeness + g.weight_format + g.weight_safety
    return g.weight_safety / total


def safety_weight_kept(c: _Case) -> str | None:
    if c.new is None:
        return None
    old, new = c.config.guardian, c.new.guardian
    if new.weight_safety < old.weight_safety:
        return f"weight_safety would fall from {old.weight_safety} to {new.weight_safety}"
    if _safety_share(new) < _safety_share(old) - 1e-12:
        return (
            f"safety's share of the score would fall from {_safety_share(old):.3f} "
            f"to {_safety_share(new):.3f}"
        )
    return None


def safety_checks_on(c: _Case) -> str | None:
    if c.new is None:
        return None
    off = []
    if c.config.guardian.pii_check and not c.new.guardian.pii_check:
        off.append("guardian.pii_check")
    if c.config.intake.reject_injection and not c.new.intake.reject_injection:
        off.append("intake.reject_injection")
    if c.new.guardian.leak_min_chars > c.config.guardian.leak_min_chars:
        off.append("guardian.leak_min_chars (a less sensitive leak check)")
    return f"would weaken {', '.join(off)}" if off else None


def step_bounded(c: _Case) -> str | None:
    if c.new is None:
        return None
    key = c.proposal.key
    old, new = value_of(c.config, key), value_of(c.new, key)
    bound = _STEP_BOUNDS.get(key)
    return bound(old, new, c.rules) if bound is not None else None


def _temperature_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if abs(new - old) <= r.max_temperature_step + 1e-9:
        return None
    return f"temperature may move by at most {r.max_temperature_step} ({old} -> {new})"


def _max_tokens_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if old / r.max_tokens_factor <= new <= old * r.max_tokens_factor:
        return None
    return f"max_tokens may change by at most x{r.max_tokens_factor} ({old} -> {new})"


def _threshold_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if abs(new - old) <= r.max_threshold_step + 1e-9:
        return None
    return f"a threshold may move by at most {r.max_threshold_step} ({old} -> {new})"


def _rounds_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if abs(new - old) <= r.max_rounds_step:
        return None
    return f"max_rounds may move by at most {r.max_rounds_step} ({old} -> {new})"


def _prompt_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    delta = abs(len(new) - len(old))
    if delta <= r.max_prompt_delta_chars:
        return None
    return f"the prompt would change by {delta} characters (at most {r.max_prompt_delta_chars})"


def _capacity_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if new is None:
        return None  # back to each worker's own setting
    if old is None:
        if new <= r.max_concurrency:
            return None
        return f"at most {r.max_concurrency} slots per worker ({new})"
    if old / r.max_capacity_factor <= new <= old * r.max_capacity_factor:
        return None
    return f"a capacity key may change by at most x{r.max_capacity_factor} ({old} -> {new})"


def _weights_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    if old and not any(w > 0 for w in new.values()):
        return "every deployment's routing weight would be zero"
    moved = {d: abs(new.get(d, 0.0) - old.get(d, 0.0)) for d in set(old) | set(new)}
    too_far = sorted(d for d, step in moved.items() if step > r.max_weight_step + 1e-9)
    if not too_far:
        return None
    return f"routing weights may move by at most {r.max_weight_step} ({', '.join(too_far)})"


def _lessons_step(old: Any, new: Any, r: SafetyRules) -> str | None:
    before = {(scope, text) for scope, texts in old.items() for text in texts}
    after = {(scope, text) for scope, texts in new.items() for text in texts}
    problems = []
    if len(before ^ after) > 1:
        problems.append(f"{len(before ^ after)} lessons would change (at most one at a time)")
    long = [t for _, t in after - before if len(t) > r.max_lesson_chars]
    if long:
        problems.append(f"a lesson of {len(long[0])} characters (at most {r.max_lesson_chars})")
    full = sorted(s for s, texts in new.items() if len(texts) > r.max_lessons_per_scope)
    if full:
        problems.append(f"over {r.max_lessons_per_scope} lessons for {', '.join(full)}")
    return "; ".join(problems) or None


_STEP_BOUNDS: dict[str, Callable[[Any, Any, SafetyRules], str | None]] = {
    "specialist.lessons": _lessons_step,
    "capacity.specialist_concurrency": _capacity_step,
    "capacity.priority_guard_every": _capacity_step,
    "routing.weights": _weights_step,
    "specialist.temperature": _temperature_step,
    "specialist.max_tokens": _max_tokens_step,
    "specialist.system_prompt": _prompt_step,
    "refine.max_rounds": _rounds_step,
    **dict.fromkeys(THRESHOLD_KEYS, _threshold_step),
}


def rate_limited(c: _Case) -> str | None:
    since = c.now - c.rules.rate_window
    recent = sum(1 for e in c.recent if since < e.occurred_at <= c.now)
    if recent < c.rules.max_changes:
        return None
    return (
        f"{recent} config changes in the last {c.rules.rate_window} (at most {c.rules.max_changes})"
    )


RULES: tuple[tuple[str, Rule], ...] = (
    ("known_key", known_key),
    ("tunable_key", tunable_key),
    ("kind_matches_key", kind_matches_key),
    ("current_value_is_live", current_value_is_live),
    ("value_validates", value_validates),
    ("changes_something", changes_something),
    ("pass_threshold_floor", pass_threshold_floor),
    ("safety_weight_kept", safety_weight_kept),
    ("safety_checks_on", safety_checks_on),
    ("step_bounded", step_bounded),
    ("rate_limit", rate_limited),
)
"""Every rule, in the order its failure is reported."""
