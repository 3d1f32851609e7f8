"""The live configuration as flat keys and JSON values: what ``ConfigChanged.values`` holds.

``to_values`` and ``from_values`` are inverse; ``apply_change`` is the one way a
single key changes; ``config_changed`` is the event that publishes a new version.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.config import PipelineConfig
from agents.ids import stable_id
from schemas.errors import GuardianError
from schemas.network_events import ConfigChanged

CONFIG_SCOPE = "global"
"""The partition key of ``ConfigChanged``: one configuration for the whole pipeline."""
PROMPT_KEY = "specialist.system_prompt"
PROMPT_VERSION_KEY = "specialist.prompt_version"


class ConfigValueError(GuardianError, ValueError):
    """A configuration value or key is invalid; resending the same values never helps."""

    retriable = False


def _sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in PipelineConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            sections[name] = field.annotation
    return sections


SECTIONS = _sections()
KEYS: tuple[str, ...] = tuple(
    f"{section}.{field}" for section, model in SECTIONS.items() for field in model.model_fields
)
"""Every configuration key, in declaration order (``<section>.<field>``)."""


def encode(value: object) -> str:
    """The canonical JSON of one value: equal values always give equal strings."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def decode(key: str, text: str) -> Any:
    """Parse the JSON of ``key``'s value (NaN and infinities are refused)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ConfigValueError(f"{key}: not valid JSON ({exc})") from exc


def to_values(config: PipelineConfig) -> dict[str, str]:
    """Every key of ``config`` with its canonical JSON value (the version is not a key)."""
    values: dict[str, str] = {}
    for section in SECTIONS:
        policy = getattr(config, section)
        for field in type(policy).model_fields:
            values[f"{section}.{field}"] = encode(getattr(policy, field))
    return values


def value_of(config: PipelineConfig, key: str) -> Any:
    """The live value of ``key`` (raises on an unknown key)."""
    section, _, field = key.partition(".")
    if key not in KEYS:
        raise ConfigValueError(f"unknown config key {key!r}")
    return getattr(getattr(config, section), field)


def from_values(values: dict[str, str], version: int) -> PipelineConfig:
    """Build and validate a configuration; a missing key takes its default.

    Unknown keys, invalid JSON, wrong types, out-of-range values and broken
    invariants are all reported at once in one ``ConfigValueError``.
    """
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigValueError(f"unknown config keys: {', '.join(unknown)}")
    nested: dict[str, Any] = {"version": version}
    for key, text in values.items():
        section, _, field = key.partition(".")
        nested.setdefault(section, {})[field] = decode(key, text)
    try:
        config = PipelineConfig.model_validate(nested, strict=True)
    except ValidationError as exc:
        raise ConfigValueError(_describe(exc)) from exc
    problems = invariant_violations(config)
    if problems:
        raise ConfigValueError("; ".join(problems))
    return config


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def invariant_violations(config: PipelineConfig) -> list[str]:
    """Cross-field rules the field types cannot express."""
    g, i = config.guardian, config.intake
    weights = (g.weight_alignment, g.weight_completeness, g.weight_format, g.weight_safety)
    problems = []
    if g.full_alignment <= g.min_alignment:
        problems.append("guardian.full_alignment must be above guardian.min_alignment")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        problems.append("guardian weights must be finite, non-negative and sum above 0")
    if i.min_priority > i.max_priority:
        problems.append("intake.min_priority must not exceed intake.max_priority")
    if config.refine.max_rounds > i.max_rounds_cap:
        problems.append("refine.max_rounds must not exceed intake.max_rounds_cap")
    return problems


def apply_change(config: PipelineConfig, key: str, json_value: str) -> PipelineConfig:
    """``config`` with one key changed and validated; the version is left as it is.

    A new system prompt gets a derived prompt version (``v1`` -> ``v1+1a2b3c4d``), so
    every prompt text has its own version and verdicts and diagnoses never mix two
    prompts under one name.
    """
    if key not in KEYS:
        raise ConfigValueError(f"unknown config key {key!r}")
    values = to_values(config)
    values[key] = json_value
    new = from_values(values, config.version)
    if key == PROMPT_KEY and new.specialist.system_prompt != config.specialist.system_prompt:
        new = _bump_prompt_version(config, new)
    return new


def holds(config: PipelineConfig, key: str, json_value: str) -> bool:
    """Whether ``key``'s live value is the one ``json_value`` encodes (as values, not as
    text; a bool is not taken for a number)."""
    try:
        claimed = decode(key, json_value)
    except ConfigValueError:
        return False
    live = value_of(config, key)
    return bool(claimed == live) and isinstance(claimed, bool) == isinstance(live, bool)


def changed_from(
    config: PipelineConfig, key: str, expected: str, new: str
) -> PipelineConfig | None:
    """``config`` with ``key`` set to ``new`` when it still holds ``expected``; None when
    someone changed it since (a change derived from an old value must not overwrite a
    newer one)."""
    return apply_change(config, key, new) if holds(config, key, expected) else None


def _bump_prompt_version(old: PipelineConfig, new: PipelineConfig) -> PipelineConfig:
    base = old.specialist.prompt_version.split("+", 1)[0]
    version = f"{base}+{stable_id(new.specialist.system_prompt)[:8]}"
    return new.model_copy(
        update={"specialist": new.specialist.model_copy(update={"prompt_version": version})}
    )


def changed_keys(previous: PipelineConfig, new: PipelineConfig) -> tuple[str, ...]:
    before, after = to_values(previous), to_values(new)
    return tuple(k for k in KEYS if before[k] != after[k])


def config_changed(
    previous: PipelineConfig,
    new: PipelineConfig,
    *,
    changed_by: str,
    reason: str,
    now: datetime,
    event_id: str,
) -> ConfigChanged:
    """The event publishing ``new`` as version ``previous.version + 1`` (whole snapshot)."""
    return ConfigChanged(
        event_id=event_id,
        request_id=CONFIG_SCOPE,
        occurred_at=now,
        config_version=previous.version,
        version=previous.version + 1,
        previous_version=previous.version,
        changed_by=changed_by,
        reason=reason,
        changed_keys=changed_keys(previous, new),
        values=to_values(new),
    )


def config_of(event: ConfigChanged) -> PipelineConfig:
    """The configuration a ``ConfigChanged`` event publishes."""
    return from_values(event.values, event.version)
