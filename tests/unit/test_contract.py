"""The event contract: every .avsc has a model and the reverse, and every model round-trips."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from schemas import topics
from schemas.catalog import MODELS, NAMESPACE, catalog, load_raw
from schemas.codec import Codec
from schemas.compat import full_problems
from schemas.envelope import Event
from tests.samples import sample

ENVELOPE = ["event_id", "request_id", "occurred_at", "config_version", "variant"]


def _avsc_names() -> set[str]:
    folder = resources.files("schemas") / "avro"
    return {f.name.removesuffix(".avsc") for f in folder.iterdir() if f.name.endswith(".avsc")}


def test_every_schema_has_a_model_and_every_model_a_schema() -> None:
    assert _avsc_names() == {m.record_name for m in MODELS}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_schema_fields_match_model_fields(model: type[Event]) -> None:
    raw = load_raw(model.record_name)
    assert raw["name"] == model.record_name
    assert raw["namespace"] == NAMESPACE
    assert [f["name"] for f in raw["fields"]] == list(model.model_fields)
    assert [f["name"] for f in raw["fields"][:5]] == ENVELOPE


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_schema_defaults_match_model_defaults(model: type[Event]) -> None:
    for field in load_raw(model.record_name)["fields"]:
        info = model.model_fields[field["name"]]
        if "default" not in field:
            assert info.is_required(), field["name"]
            continue
        default = info.get_default(call_default_factory=True)
        expected = field["default"]
        assert (list(default) if isinstance(default, tuple) else default) == expected, field["name"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_every_record_round_trips(model: type[Event]) -> None:
    codec = Codec()
    event = sample(model)
    assert codec.decode(codec.encode(event), model) == event


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_models_are_frozen_and_forbid_extra_fields(model: type[Event]) -> None:
    event = sample(model)
    with pytest.raises(Exception, match="frozen"):
        event.event_id = "other"  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs"):
        model.model_validate({**event.model_dump(), "surprise": 1})


def test_every_record_has_exactly_one_topic_and_names_follow_the_rule() -> None:
    # Tasks are the one record with a topic per priority lane; the normal lane is its topic.
    lanes_only = set(topics.TASK_LANES) - {topics.TASKS}
    primary = [t for t in topics.ALL if t not in lanes_only]
    assert sorted(t.record.record_name for t in primary) == sorted(m.record_name for m in MODELS)
    assert {t.record for t in topics.TASK_LANES} == {topics.TASKS.record}
    for spec in topics.ALL:
        prefix, _, rest = spec.name.partition(".")
        assert prefix == "guardian"
        assert rest.endswith(".v1")
    assert topics.qualified(topics.REQUESTS, "t1") == "t1.guardian.requests.v1"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_schema_is_compatible_with_every_committed_version(model: type[Event]) -> None:
    from schemas.catalog import history

    current = catalog().current[model.record_name].raw
    versions = history(model.record_name)
    assert versions, "every record keeps at least its first published version"
    for old in versions:
        assert full_problems(current, old.raw) == [], old.version


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_the_current_schema_is_published_as_the_newest_version(model: type[Event]) -> None:
    # Records the running release writes must stay readable after the next change: its
    # schema is kept in the history before the current one moves on.
    from schemas.catalog import history

    newest = history(model.record_name)[-1]
    assert newest.fingerprint == catalog().current[model.record_name].fingerprint


def test_compatibility_check_catches_breaking_changes() -> None:
    old = load_raw("FeedbackGiven")
    added_required = json.loads(json.dumps(old))
    added_required["fields"].append({"name": "score", "type": "double"})
    assert any("new field without a default" in p for p in full_problems(added_required, old))
    narrowed = json.loads(json.dumps(old))
    narrowed["fields"][3]["type"] = "int"  # config_version long -> int
    assert any("cannot be read as int" in p for p in full_problems(narrowed, old))
    added_optional = json.loads(json.dumps(old))
    added_optional["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    assert full_problems(added_optional, old) == []
