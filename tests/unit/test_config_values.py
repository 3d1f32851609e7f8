"""Config as flat keys and JSON values: round trips, validation, one-key changes, events."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from agents.config import GuardianPolicy, PipelineConfig, SpecialistProfile
from agents.config_values import (
    KEYS,
    ConfigValueError,
    apply_change,
    config_changed,
    config_of,
    from_values,
    to_values,
    value_of,
)
from schemas.codec import Codec
from schemas.network_events import ConfigChanged

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULT = PipelineConfig(version=7)
SYSTEM_SAME = SpecialistProfile().system_prompt


def test_every_field_of_every_section_has_a_key() -> None:
    expected = {
        f"{section}.{name}"
        for section in (
            "intake",
            "guardian",
            "refine",
            "specialist",
            "experiment",
            "routing",
            "capacity",
        )
        for name in type(getattr(DEFAULT, section)).model_fields
    }
    assert set(KEYS) == expected
    assert len(KEYS) == len(expected)
    assert {"guardian.pass_threshold", "guardian.pii_check", "refine.max_rounds"} <= set(KEYS)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("guardian.pass_threshold", "0.7"),
        ("guardian.min_alignment", "0.3"),
        ("guardian.pii_check", "true"),
        ("specialist.temperature", "0.2"),
        ("specialist.max_tokens", "256"),
        ("refine.max_rounds", "3"),
        ("intake.tenant_pattern", json.dumps(DEFAULT.intake.tenant_pattern)),
        ("specialist.system_prompt", json.dumps(DEFAULT.specialist.system_prompt)),
    ],
)
def test_values_are_canonical_json(key: str, text: str) -> None:
    assert to_values(DEFAULT)[key] == text


def test_round_trip_keeps_every_value_and_takes_the_version() -> None:
    config = PipelineConfig(
        version=3,
        guardian=GuardianPolicy(pass_threshold=0.65, pii_check=False),
        specialist=SpecialistProfile(system_prompt="Réponds «bien».", max_tokens=99),
    )
    assert from_values(to_values(config), 3) == config
    assert from_values(to_values(config), 9).version == 9


def test_a_missing_key_takes_its_default() -> None:
    values = to_values(DEFAULT)
    del values["guardian.min_words"]
    assert from_values(values, 7).guardian.min_words == GuardianPolicy().min_words


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"guardian.nope": "1", "zzz": "2"}, "unknown config keys: guardian.nope, zzz"),
        ({"guardian.pass_threshold": "0.7.1"}, "guardian.pass_threshold: not valid JSON"),
        ({"guardian.pass_threshold": "NaN"}, "not a finite number"),
        ({"guardian.pass_threshold": "1.5"}, "guardian.pass_threshold: Input should be less"),
        ({"guardian.pii_check": "1"}, "guardian.pii_check: Input should be a valid boolean"),
        ({"refine.max_rounds": "2.0"}, "refine.max_rounds: Input should be a valid integer"),
        ({"refine.max_rounds": "true"}, "refine.max_rounds: Input should be a valid integer"),
        ({"specialist.system_prompt": "3"}, "specialist.system_prompt: Input should be a valid"),
        ({"guardian.full_alignment": "0.2"}, "full_alignment must be above"),
        ({"guardian.weight_safety": "-0.1"}, "weights must be finite, non-negative"),
        ({"intake.min_priority": "10"}, "min_priority must not exceed"),
        ({"refine.max_rounds": "6"}, "max_rounds must not exceed intake.max_rounds_cap"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigValueError, match=re.escape(message)) as info:
        from_values(values, 1)
    assert info.value.retriable is False


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigValueError) as info:
        from_values({"guardian.pii_check": "0", "refine.max_rounds": "0"}, 1)
    assert "guardian.pii_check" in str(info.value)
    assert "refine.max_rounds" in str(info.value)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("guardian.pass_threshold", "0.75", 0.75),
        ("specialist.temperature", "0", 0.0),
        ("specialist.max_tokens", "384", 384),
        ("guardian.pii_check", "false", False),
    ],
)
def test_apply_change_changes_one_key(key: str, text: str, expected: object) -> None:
    new = apply_change(DEFAULT, key, text)
    assert value_of(new, key) == expected
    assert new.version == DEFAULT.version
    before, after = to_values(DEFAULT), to_values(new)
    assert [k for k in KEYS if before[k] != after[k]] == [key]


def test_apply_change_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigValueError, match=re.escape("unknown config key 'routing.weight.a'")):
        apply_change(DEFAULT, "routing.weight.a", "0.5")
    with pytest.raises(ConfigValueError, match=re.escape("specialist.max_tokens")):
        apply_change(DEFAULT, "specialist.max_tokens", "0")


def test_a_new_prompt_gets_its_own_prompt_version() -> None:
    first = apply_change(DEFAULT, "specialist.system_prompt", json.dumps("Be brief."))
    second = apply_change(first, "specialist.system_prompt", json.dumps("Be very brief."))
    again = apply_change(DEFAULT, "specialist.system_prompt", json.dumps("Be brief."))
    assert first.specialist.prompt_version.startswith("v1+")
    assert second.specialist.prompt_version.startswith("v1+")
    assert len({"v1", first.specialist.prompt_version, second.specialist.prompt_version}) == 3
    assert again.specialist.prompt_version == first.specialist.prompt_version


def test_the_same_prompt_text_keeps_its_version() -> None:
    named = DEFAULT.model_copy(
        update={"specialist": DEFAULT.specialist.model_copy(update={"prompt_version": "v2+ab"})}
    )
    same_text = apply_change(named, "specialist.system_prompt", json.dumps(SYSTEM_SAME))
    other_text = apply_change(named, "specialist.system_prompt", json.dumps("Be brief."))
    assert same_text.specialist.prompt_version == "v2+ab"
    assert other_text.specialist.prompt_version.startswith("v2+")
    assert other_text.specialist.prompt_version != "v2+ab"


def test_config_changed_bumps_the_version_and_lists_the_changed_keys() -> None:
    new = apply_change(DEFAULT, "specialist.temperature", "0.1")
    event = config_changed(
        DEFAULT, new, changed_by="experiments", reason="exp-1 promoted", now=T0, event_id="e-1"
    )
    assert (event.version, event.previous_version, event.config_version) == (8, 7, 7)
    assert event.changed_keys == ("specialist.temperature",)
    assert event.request_id == "global"
    assert event.values == to_values(new)
    assert config_of(event) == new.model_copy(update={"version": 8})


def test_config_changed_survives_the_codec() -> None:
    new = apply_change(DEFAULT, "specialist.system_prompt", json.dumps("Answer «briefly»."))
    event = config_changed(DEFAULT, new, changed_by="op", reason="", now=T0, event_id="e-2")
    assert event.changed_keys == ("specialist.system_prompt", "specialist.prompt_version")
    codec = Codec()
    back = codec.decode(codec.encode(event), ConfigChanged)
    assert back == event
    assert config_of(back).specialist.system_prompt == "Answer «briefly»."
