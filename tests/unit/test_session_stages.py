"""The intake and refine handlers around a session request, on a recording runtime:
one final response however the context, the deadline and redeliveries interleave,
and the session always gets the answer turn before the response goes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agents.config import PipelineConfig
from agents.refine import RequestState, start
from connectors.kafka import partition_for
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.request_events import (
    ContextProvided,
    DeadlinePassed,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
    TaskAssigned,
    VerdictIssued,
)
from streams import intake, refine
from streams.metrics import Metrics
from streams.refine_store import RefineTables, StateListener
from streams.refine_table import expire_markers, expire_states, load_marker, load_state
from streams.runtime import Runtime
from streams.settings import AppSettings
from streams.stage import Record

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CODEC = Codec()
PARTITIONS = 6


class Crash(Exception):
    """A worker dying in the middle of handling a record."""


class _Acked:
    """What a faust send returns: awaiting it waits for the broker's ack."""

    def __await__(self) -> Any:
        return _done().__await__()


async def _done() -> None:
    return None


class RecordingRuntime:
    """The parts of ``streams.runtime.Runtime`` the handlers use; what is sent is kept
    in order, and the next send of a kind can be made to crash."""

    def __init__(self) -> None:
        self.settings = AppSettings()
        self.codec = CODEC
        self.config = PipelineConfig(version=1)
        self.ports = SimpleNamespace(cache=None)
        self.metrics = Metrics()
        self.table = RefineTables(states={}, markers={})
        self.partitions = PARTITIONS
        self.now = T0
        self.sent: list[Event] = []
        self.crash_on: set[str] = set()

    def clock(self) -> datetime:
        return self.now

    def live_config(self) -> PipelineConfig:
        return self.config

    def config_at(self, _version: int) -> PipelineConfig:
        return self.config

    def topic(self, _spec: object) -> RecordingRuntime:
        return self

    async def send(self, *, key: bytes, value: bytes, **_: object) -> _Acked:
        self._record(CODEC.decode_any(value))
        return _Acked()

    async def emit(self, event: Event, **_: object) -> None:
        self._record(event)

    def _record(self, event: Event) -> None:
        if event.record_name in self.crash_on:
            self.crash_on.discard(event.record_name)
            raise Crash(event.record_name)
        self.sent.append(event)

    def count_response(self, _response: ResponseDelivered) -> None:
        return None

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.sent if isinstance(e, kind)]


def record(event: Event) -> Record:
    key = event.request_id.encode()
    found = SimpleNamespace(
        topic="t", partition=partition_for(key, PARTITIONS), offset=0, key=key,
        value=CODEC.encode(event),
    )  # fmt: skip
    return cast(Record, found)


async def to_intake(rt: RecordingRuntime, event: Event) -> None:
    await intake.handle(cast(Runtime, rt), record(event))


async def to_refine(rt: RecordingRuntime, event: Event) -> None:
    await refine.handle(cast(Runtime, rt), record(event))


def state_of(rt: RecordingRuntime, request_id: str) -> RequestState | None:
    return load_state(cast(Runtime, rt), request_id)


@pytest.fixture(autouse=True)
def _one_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "choose", lambda _rt, _rid, _sub="main": ("dep-a", False))


def asked() -> RequestSubmitted:
    return RequestSubmitted(
        event_id="e-1", request_id="req-1", occurred_at=T0, prompt="How do I bake bread?",
        session_id="s-1",
    )  # fmt: skip


def context(at: datetime) -> ContextProvided:
    return ContextProvided(event_id="c-1", request_id="req-1", occurred_at=at, session_id="s-1")


def passing(task: TaskAssigned, at: datetime) -> VerdictIssued:
    return VerdictIssued(
        event_id=f"v-{task.task_id}", request_id=task.request_id, occurred_at=at,
        task_id=task.task_id, subtask=task.subtask, round=task.round,
        answer_event_id=f"a-{task.task_id}", passed=True, score=0.9, threshold=0.7,
        specialist=task.specialist, model="m", content="Knead, proof, then bake.",
    )  # fmt: skip


async def test_a_context_after_the_deadline_does_not_reopen_the_request() -> None:
    rt = RecordingRuntime()
    await to_intake(rt, asked())
    held = state_of(rt, "req-1")
    assert held is not None
    assert held.awaiting is not None
    rt.now = held.deadline_at
    passed = DeadlinePassed(
        event_id="d", request_id="req-1", occurred_at=rt.now, deadline_at=held.deadline_at
    )
    await to_refine(rt, passed)
    await to_intake(rt, context(rt.now + timedelta(seconds=1)))
    assert rt.of(TaskAssigned) == []
    responses = rt.of(ResponseDelivered)
    assert [r.status for r in responses] == ["timeout"], "acknowledged once: never again"
    final = state_of(rt, "req-1")
    assert final is not None
    assert (final.done, final.awaiting, final.final_sent) == (True, None, True)


async def test_a_redelivered_verdict_sends_the_answer_turn_a_crash_lost() -> None:
    rt = RecordingRuntime()
    await to_intake(rt, asked())
    await to_intake(rt, context(T0))
    (task,) = rt.of(TaskAssigned)
    verdict = passing(task, T0 + timedelta(seconds=1))
    rt.crash_on.add("SessionTurn")
    with pytest.raises(Crash):
        await to_refine(rt, verdict)
    assert rt.of(ResponseDelivered) == [], "no response before the session has the turn"
    await to_refine(rt, verdict)
    answers = [t for t in rt.of(SessionTurn) if t.role == "assistant"]
    assert [a.content for a in answers] == ["Knead, proof, then bake."]
    last_turn = rt.sent.index(answers[0])
    (response,) = rt.of(ResponseDelivered)
    assert rt.sent.index(response) > last_turn


async def test_a_redelivered_context_sends_the_first_tasks_a_crash_lost() -> None:
    rt = RecordingRuntime()
    await to_intake(rt, asked())
    rt.crash_on.add("TaskAssigned")
    with pytest.raises(Crash):
        await to_intake(rt, context(T0))
    await to_intake(rt, context(T0))
    (task,) = rt.of(TaskAssigned)
    assert task.task_id == "req-1/main/1"
    # once the request is answered and the answer acknowledged, a stale copy of the
    # context sends nothing
    await to_refine(rt, passing(task, T0))
    before = len(rt.sent)
    await to_intake(rt, context(T0))
    assert rt.sent[before:] == []


def test_a_state_stored_before_subtasks_is_read_as_its_main_run() -> None:
    request = RequestSubmitted(
        event_id="e", request_id="r-old", occurred_at=T0, prompt="hi?", priority=8
    )
    current = start(request, "d" * 64, T0, PipelineConfig(version=1), deployment="dep-a").state
    stored = current.model_dump(mode="json")
    run = stored.pop("runs")[0]
    for field in ("prompt", "answer_format", "priority", "task_class", "complexity_level"):
        stored.pop(field)
    stored.pop("complexity_score")
    stored.pop("context")
    stored.pop("awaiting")
    stored |= {"round": 1, "current_task": run["current_task"], "attempts": []}
    old = RequestState.model_validate(stored)
    assert old.round == 1
    assert old.current_task == current.current_task
    assert old.open_tasks == current.open_tasks
    assert (old.prompt, old.priority) == ("hi?", 8)

    index = RecordingRuntime().table.index
    recover = StateListener(index).recovered
    recover(b"r-old", RequestState.model_validate(stored).model_dump_json().encode())
    recover(b"broken", b'{"not": "a state"}')
    assert set(index.open_deadlines) == {"r-old"}, "an unreadable entry is skipped, not fatal"


async def _finished(rt: RecordingRuntime) -> ResponseDelivered:
    await to_intake(rt, asked())
    await to_intake(rt, context(T0))
    (task,) = rt.of(TaskAssigned)
    await to_refine(rt, passing(task, T0 + timedelta(seconds=1)))
    (response,) = rt.of(ResponseDelivered)
    assert isinstance(response, ResponseDelivered)
    return response


async def test_a_finished_request_leaves_the_table_after_its_retention_and_keeps_a_marker() -> None:
    rt = RecordingRuntime()
    response = await _finished(rt)
    real = cast(Runtime, rt)
    assert expire_states(real, response.occurred_at + timedelta(seconds=599)) == 0
    assert expire_states(real, response.occurred_at + timedelta(seconds=600)) == 1
    assert b"req-1" not in rt.table.states
    assert rt.table.index.finished == {}
    marker = load_marker(real, "req-1")
    assert marker is not None
    assert marker.response == response


async def test_a_resend_after_expiry_gets_the_same_response_and_no_task() -> None:
    rt = RecordingRuntime()
    response = await _finished(rt)
    expire_states(cast(Runtime, rt), response.occurred_at + timedelta(hours=1))
    before = len(rt.sent)
    await to_intake(rt, asked().model_copy(update={"event_id": "e-2"}))
    await to_refine(rt, passing(rt.of(TaskAssigned)[0], T0))  # a late verdict too
    again = rt.sent[before:]
    assert again == [response], "the resend gets the very same response; the late verdict nothing"


async def test_a_conflicting_resend_after_expiry_is_still_a_conflict() -> None:
    rt = RecordingRuntime()
    response = await _finished(rt)
    expire_states(cast(Runtime, rt), response.occurred_at + timedelta(hours=1))
    before = len(rt.sent)
    resend = asked().model_copy(update={"event_id": "e-9", "prompt": "Something else"})
    await to_intake(rt, resend)
    (rejection,) = rt.sent[before:]
    assert isinstance(rejection, ResponseDelivered)
    assert (rejection.status, rejection.reason_code) == ("rejected", "conflict")
    assert rejection.submission_id == "e-9"
    assert rt.of(TaskAssigned)[1:] == []
    marker = load_marker(cast(Runtime, rt), "req-1")
    assert marker is not None
    assert marker.response == response, "the request keeps its one answer"


async def test_markers_expire_after_their_retention() -> None:
    rt = RecordingRuntime()
    response = await _finished(rt)
    real = cast(Runtime, rt)
    expire_states(real, response.occurred_at + timedelta(hours=1))
    week = timedelta(seconds=rt.settings.refine.done_retain_s)
    assert expire_markers(real, response.occurred_at + week - timedelta(seconds=1)) == 0
    assert expire_markers(real, response.occurred_at + week) == 1
    assert load_marker(real, "req-1") is None
    assert rt.table.markers == {}
