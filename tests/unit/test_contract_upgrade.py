"""The contract's upgrade path: a record written by a newer worker, read by the previous
release and by one that knows the new schema; and the other way round."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schemas.catalog import Catalog, catalog, history
from schemas.codec import Codec
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import Constraint, RequestSubmitted, SpecialistAnswered, TaskAssigned

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
UPGRADED = ("RequestSubmitted", "TaskAssigned", "SpecialistAnswered")


def release(version: str, *, knows: tuple[str, ...] = ()) -> Catalog:
    """The catalog of a release whose schemas for the upgraded records are ``version``,
    and which also knows the writer schemas of the versions in ``knows``."""
    now = catalog()
    current = dict(now.current)
    by_fp = {fp: v for fp, v in now.by_fingerprint.items()}
    for name in UPGRADED:
        versions = {v.version: v for v in history(name)}
        current[name] = versions[version]
        for v in versions.values():
            if v.version != version and v.version not in knows:
                by_fp.pop(v.fingerprint, None)
        by_fp.pop(now.current[name].fingerprint, None)
        for v in (versions[version], *(versions[k] for k in knows)):
            by_fp[v.fingerprint] = v
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
    )


def test_the_upgraded_records_current_schema_is_their_newest_published_version() -> None:
    for name in UPGRADED:
        assert history(name)[-1].fingerprint == catalog().current[name].fingerprint


def test_the_previous_release_dead_letters_a_new_writer_s_record() -> None:
    # Why readers upgrade first: without the schema registry a reader knows the writer
    # schemas it ships with, and refuses any other.
    data = Codec().encode(new_request())
    with pytest.raises(DecodeError) as refused:
        Codec(cat=release("1")).decode(data, RequestSubmitted)
    assert refused.value.reason is DecodeReason.UNKNOWN_SCHEMA


def test_a_reader_that_knows_the_new_writer_schema_reads_it_with_its_old_one() -> None:
    # The previous reader schema resolving the new writer's body (what a registry-backed
    # previous release does): the new fields are skipped, the rest is intact.
    data = Codec().encode(new_request())
    old = Codec(cat=release("1", knows=("2",))).decode(data, RequestSubmitted)
    assert old.prompt == "Name three rivers."
    assert old.constraints == ()
    assert old.max_tokens is None
    assert old.response_format is None


@pytest.mark.parametrize("record", UPGRADED)
def test_the_new_release_reads_records_of_the_previous_one_with_defaults(record: str) -> None:
    events = {
        "RequestSubmitted": RequestSubmitted(
            event_id="e1", request_id="r1", occurred_at=NOW, prompt="p"
        ),
        "TaskAssigned": TaskAssigned(
            event_id="e2",
            request_id="r1",
            occurred_at=NOW,
            task_id="t",
            round=1,
            specialist="general",
            deployment="d",
            instruction="i",
            system_prompt="s",
        ),
        "SpecialistAnswered": SpecialistAnswered(
            event_id="e3",
            request_id="r1",
            occurred_at=NOW,
            task_id="t",
            round=1,
            specialist="general",
            deployment="d",
            model="m",
            status="ok",
            content="c",
        ),
    }
    written = Codec(cat=release("1")).encode(events[record])
    read = Codec().decode_any(written)
    assert read == events[record]
    assert read.constraints == ()  # type: ignore[attr-defined]
