"""Retention of finished requests and idle sessions: what expires when, the done marker
and its encoding, and the indexes kept on writes, recovery and rebalances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.config import PipelineConfig
from agents.context import SessionState, idle_sessions, on_prompt, touch
from agents.intake import payload_digest
from agents.refine import RequestState, closed, rejected, start
from agents.retention import (
    DoneMarker,
    Retention,
    answer_for,
    due,
    expired_markers,
    expired_states,
    marker_of,
)
from connectors.kafka import partition_for
from schemas.request_events import RequestSubmitted, ResponseDelivered
from streams.refine_store import (
    MarkerListener,
    RefineIndex,
    StateListener,
    decode_marker,
    encode_marker,
    marker_done_at,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICY = Retention(state=timedelta(minutes=10), marker=timedelta(days=7), max_markers=3)
ANSWER = (
    "A consumer group lets several consumers share the partitions of a topic, so that "
    "each record is processed by exactly one member of the group; when a member joins "
    "or leaves, the group rebalances and the partitions are spread again. "
) * 4


def request(
    rid: str = "r-1", prompt: str = "What does a Kafka consumer group do?"
) -> RequestSubmitted:
    return RequestSubmitted(event_id=f"e-{rid}", request_id=rid, occurred_at=T0, prompt=prompt)


def finished(rid: str = "r-1", at: datetime = T0) -> RequestState:
    req = request(rid)
    response = rejected(req, "x", "reason", at, 1).model_copy(
        update={"status": "passed", "content": ANSWER, "reason": None, "reason_code": None}
    )
    return closed(req, payload_digest(req), response)


def test_due_entries_are_those_finished_at_least_the_retention_ago() -> None:
    finished_at = {"old": T0, "edge": T0 + timedelta(minutes=1), "new": T0 + timedelta(minutes=5)}
    now = T0 + timedelta(minutes=11)
    assert due(finished_at, now, timedelta(minutes=10)) == ["old", "edge"]
    assert expired_states(finished_at, now, POLICY) == ["old", "edge"]


@pytest.mark.parametrize(
    ("ages_s", "expected"),
    [
        ((10, 20, 30), []),  # within retention and cap
        ((10, 20, 30, 40, 50), ["r4", "r3"]),  # two over the cap: the oldest go
        ((8 * 86400, 20, 30, 40), ["r0"]),  # past retention; then within the cap
        ((8 * 86400, 10, 20, 30, 40, 50), ["r0", "r5", "r4"]),
    ],
)
def test_markers_go_past_their_retention_then_oldest_first_beyond_the_cap(
    ages_s: tuple[int, ...], expected: list[str]
) -> None:
    now = T0 + timedelta(days=10)
    markers = {f"r{i}": now - timedelta(seconds=age) for i, age in enumerate(ages_s)}
    assert expired_markers(markers, now, POLICY) == expected


def test_a_marker_answers_the_same_payload_and_refuses_another() -> None:
    state = finished()
    marker = marker_of(state)
    assert marker is not None
    assert marker.request_id == "r-1"
    assert marker.done_at == T0
    assert answer_for(marker, payload_digest(request())) == state.final
    assert answer_for(marker, payload_digest(request(prompt="Something else"))) is None


def test_an_open_request_has_no_marker() -> None:
    step = start(request(), "d" * 64, T0, PipelineConfig(version=1), deployment="dep")
    assert marker_of(step.state) is None


def test_a_marker_round_trips_and_is_a_fraction_of_the_state() -> None:
    state = finished()
    marker = marker_of(state)
    assert marker is not None
    raw = encode_marker(marker)
    assert decode_marker(raw) == marker
    assert marker_done_at(raw) == T0
    full = len(state.model_dump_json())
    assert len(raw) < full / 2, (len(raw), full)


def test_a_marker_of_a_response_without_content_is_small() -> None:
    req = request()
    marker = DoneMarker(
        payload_digest=payload_digest(req), response=rejected(req, "empty_prompt", "empty", T0, 1)
    )
    assert len(encode_marker(marker)) < 200


def test_the_index_follows_writes_and_recovery_and_counts_what_it_parsed() -> None:
    index = RefineIndex()
    open_ = start(request("r-open"), "d" * 64, T0, PipelineConfig(version=1), deployment="dep")
    index.track("r-open", open_.state)
    assert set(index.open_deadlines) == {"r-open"}
    assert index.open_tasks == {"r-open": T0}
    index.track("r-open", finished("r-open"))
    assert (index.open_deadlines, index.open_tasks) == ({}, {})
    assert index.finished == {"r-open": T0}
    assert index.parsed == 0, "a write indexes the state it has; nothing is parsed"

    states = StateListener(index)
    states.recovered(
        b"r-2", open_.state.model_copy(update={"request_id": "r-2"}).model_dump_json().encode()
    )
    states.recovered(b"r-open", None)
    assert set(index.open_deadlines) == {"r-2"}
    assert index.finished == {}
    assert index.parsed == 1


def test_revoked_partitions_leave_every_index() -> None:
    index = RefineIndex()
    ids = [f"r-{i}" for i in range(40)]
    for rid in ids:
        index.track(rid, finished(rid))
        MarkerListener(index).recovered(rid.encode(), encode_marker(marker_of(finished(rid))))  # type: ignore[arg-type]
    StateListener(index).kept({0, 2}, 6)
    MarkerListener(index).kept({0, 2}, 6)
    kept = {rid for rid in ids if partition_for(rid.encode(), 6) in {0, 2}}
    assert set(index.finished) == kept
    assert set(index.markers) == kept
    assert 0 < len(kept) < len(ids)


def test_sessions_expire_after_being_idle() -> None:
    state = touch(on_prompt(SessionState(), "r1", "hi"), T0)
    assert state.active_at == T0
    assert SessionState.model_validate_json(state.model_dump_json()) == state
    active = {"s-old": T0, "s-new": T0 + timedelta(hours=23)}
    assert idle_sessions(active, T0 + timedelta(hours=24), timedelta(hours=24)) == ["s-old"]


def test_a_session_stored_before_activity_times_still_loads() -> None:
    stored = '{"context": {"turns": [], "dropped": 0}, "pending": [], "seen": []}'
    assert SessionState.model_validate_json(stored).active_at is None


def test_finished_responses_keep_their_identity() -> None:
    marker = marker_of(finished())
    assert marker is not None
    again = decode_marker(encode_marker(marker)).response
    assert isinstance(again, ResponseDelivered)
    assert (again.event_id, again.content, again.occurred_at) == (
        marker.response.event_id,
        marker.response.content,
        marker.response.occurred_at,
    )
