"""The contract's upgrade path: a record written by a newer worker, read by the previous
release and by one that knows the new schema; and the other way round."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schemas.catalog import Catalog, catalog, history
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import Constraint, RequestSubmitted
from tests.samples import sample

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
UPGRADED = ("RequestSubmitted", "TaskAssigned", "SpecialistAnswered", "NetworkFactRecorded")


PREVIOUS = {
    "RequestSubmitted": "1",
    "TaskAssigned": "2",
    "SpecialistAnswered": "1",
    "NetworkFactRecorded": "1",
}
"""The published version each upgraded record had in the release before constraints."""
BEFORE_CONTEXT = PREVIOUS | {"RequestSubmitted": "2"}
"""The release before requests carried their conversation context."""


def previous_release(
    *, knows_new: bool = False, versions_then: dict[str, str] = PREVIOUS
) -> Catalog:
    """The catalog of an earlier release (``versions_then``): the upgraded records'
    schemas as they were then, knowing no later writer schema, or, with ``knows_new``,
    the new ones too (what a schema registry tells a reader)."""
    now = catalog()
    current = dict(now.current)
    by_fp = dict(now.by_fingerprint)
    for name in UPGRADED:
        versions = {v.version: v for v in history(name)}
        current[name] = versions[versions_then[name]]
        if not knows_new:
            for v in versions.values():
                if int(v.version) > int(versions_then[name]):
                    by_fp.pop(v.fingerprint, None)
    return replace(now, current=current, by_fingerprint=by_fp)


def new_request() -> RequestSubmitted:
    return RequestSubmitted(
        event_id="e1",
        request_id="r1",
        occurred_at=NOW,
        prompt="Name three rivers.",
        constraints=(Constraint(kind="words", relation="at_most", count=20),),
        max_tokens=64,
        temperature=0.4,
        response_format='{"type": "json_object"}',
        context=("User: Hello.\nAssistant: Hi.",),
    )


def test_the_previous_release_dead_letters_a_new_writer_s_record() -> None:
    # Why readers upgrade first: without the schema registry a reader knows the writer
    # schemas it ships with, and refuses any other.
    data = Codec().encode(new_request())
    with pytest.raises(DecodeError) as refused:
        Codec(cat=previous_release()).decode(data, RequestSubmitted)
    assert refused.value.reason is DecodeReason.UNKNOWN_SCHEMA


def test_a_reader_that_knows_the_new_writer_schema_reads_it_with_its_old_one() -> None:
    # The previous reader schema resolving the new writer's body (what a registry-backed
    # previous release does): the new fields are skipped, the rest is intact.
    data = Codec().encode(new_request())
    old = Codec(cat=previous_release(knows_new=True)).decode(data, RequestSubmitted)
    assert old.prompt == "Name three rivers."
    assert old.constraints == ()
    assert old.max_tokens is None
    assert old.response_format is None


def test_the_release_before_context_reads_a_request_with_context_without_it() -> None:
    data = Codec().encode(new_request())
    old = Codec(cat=previous_release(knows_new=True, versions_then=BEFORE_CONTEXT)).decode(
        data, RequestSubmitted
    )
    assert old.context == ()
    assert old.constraints == new_request().constraints
    assert old.response_format == '{"type": "json_object"}'


ADDED = {
    "RequestSubmitted": ("constraints", "max_tokens", "temperature", "response_format", "context"),
    "TaskAssigned": ("constraints", "reasked_for"),
    "SpecialistAnswered": ("constraints", "task_class", "reasked_for"),
    "NetworkFactRecorded": (
        "latency_ms",
        "tokens",
        "subtask",
        "task_class",
        "answer_format",
        "reasked_for",
    ),
}
"""The fields added since ``PREVIOUS``, per record."""


def previous_release_event(record: str) -> Event:
    """A record with every field of its previous version set, and the fields added
    since at their defaults (what the previous release could write)."""
    model = catalog().model(record)
    event = sample(model)
    return event.model_copy(update={f: model.model_fields[f].default for f in ADDED[record]})


@pytest.mark.parametrize("record", UPGRADED)
def test_the_new_release_reads_records_of_the_previous_one_with_defaults(record: str) -> None:
    event = previous_release_event(record)
    written = Codec(cat=previous_release()).encode(event)
    read = Codec().decode_any(written)
    assert read == event
