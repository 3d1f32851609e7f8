"""The specialist's answer store: answers recorded by task event id and kept per request
(pure memory, encoding, expiry), and the in-order acks of concurrently answered tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.answer_memory import RecordedAnswers, expired, recorded, with_answer
from agents.ports import Completion
from agents.specialist import answered
from schemas.request_events import TaskAssigned
from streams.answer_store import AnswerIndex, decode, encode
from streams.lanes import InOrderAcks

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def task(event_id: str, request_id: str = "req-1", round_: int = 1) -> TaskAssigned:
    return TaskAssigned(
        event_id=event_id,
        request_id=request_id,
        occurred_at=T0,
        task_id=f"{request_id}/main/{round_}",
        round=round_,
        specialist="general",
        deployment="primary",
        instruction="Who wrote Romeo and Juliet?",
        system_prompt="Answer briefly.",
    )


def answer_of(t: TaskAssigned, content: str = "Shakespeare.") -> Any:
    done = Completion(content=content, model="m", prompt_tokens=5, completion_tokens=2)
    return answered(t, done, deployment="primary", latency_ms=200.0, attempts=1, now=T0)


def test_a_task_answered_once_is_found_by_its_event_id() -> None:
    first, second = task("t-1"), task("t-2", round_=2)
    entry = with_answer(None, first, answer_of(first), T0)
    assert recorded(entry, first) == answer_of(first)
    assert recorded(entry, second) is None
    assert recorded(None, first) is None


def test_the_first_recorded_answer_stays_and_later_rounds_add_theirs() -> None:
    first, second = task("t-1"), task("t-2", round_=2)
    entry = with_answer(None, first, answer_of(first, "one"), T0)
    entry = with_answer(entry, first, answer_of(first, "other"), T0 + timedelta(seconds=1))
    entry = with_answer(entry, second, answer_of(second, "two"), T0 + timedelta(seconds=2))
    assert recorded(entry, first).content == "one"  # type: ignore[union-attr]
    assert recorded(entry, second).content == "two"  # type: ignore[union-attr]
    assert entry.recorded_at == T0 + timedelta(seconds=2)


def test_an_entry_round_trips_through_its_encoding() -> None:
    t = task("t-1")
    entry = with_answer(None, t, answer_of(t), T0)
    assert decode(encode(entry)) == entry


@pytest.mark.parametrize(
    ("ages_s", "retain_s", "cap", "gone"),
    [
        ({"a": 10, "b": 100}, 60, 10, ["b"]),
        ({"a": 10, "b": 20, "c": 30}, 600, 2, ["c"]),
        ({"a": 10, "b": 20, "c": 300}, 60, 1, ["c", "b"]),
        ({}, 60, 1, []),
    ],
)
def test_entries_leave_after_the_retention_and_the_oldest_beyond_the_cap(
    ages_s: dict[str, int], retain_s: int, cap: int, gone: list[str]
) -> None:
    now = T0 + timedelta(hours=1)
    at = {rid: now - timedelta(seconds=age) for rid, age in ages_s.items()}
    assert expired(at, now, timedelta(seconds=retain_s), cap) == gone


def test_the_index_follows_recovered_entries_and_deletes() -> None:
    index = AnswerIndex()
    t = task("t-1")
    index.recovered(b"req-1", encode(with_answer(None, t, answer_of(t), T0)))
    index.recovered(b"req-2", b"not an entry")
    assert index.recorded_at == {"req-1": T0}
    index.recovered(b"req-1", None)
    assert index.recorded_at == {}


def test_a_recorded_entry_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        RecordedAnswers.model_validate({"recorded_at": T0, "answers": {}, "x": 1})


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int


@dataclass
class _Event:
    message: _Message


class _Stream:
    """A shared queue of events, as faust's actors of one agent share it."""

    def __init__(self, events: list[_Event]) -> None:
        self.queue: asyncio.Queue[_Event] = asyncio.Queue()
        for e in events:
            self.queue.put_nowait(e)
        self.acked: list[int] = []

    async def events(self) -> Any:
        previous: _Event | None = None
        while not self.queue.empty():
            event = self.queue.get_nowait()
            yield event
            previous = event
            self.acked.append(previous.message.offset)  # faust acks on the next pull


async def test_records_finished_out_of_order_are_released_in_offset_order() -> None:
    stream = _Stream([_Event(_Message("tasks", 0, n)) for n in range(4)])
    acks = InOrderAcks()
    finish = {0: asyncio.Event(), 1: asyncio.Event(), 2: asyncio.Event(), 3: asyncio.Event()}
    released: list[int] = []

    async def actor() -> None:
        async for event in acks.events(stream).events():
            await finish[event.message.offset].wait()
            released.append(event.message.offset)

    actors = [asyncio.create_task(actor()) for _ in range(4)]
    for offset in (3, 1, 2):
        finish[offset].set()
        await asyncio.sleep(0.01)
    assert stream.acked == [], "nothing is acked while offset 0 is still being handled"
    assert acks.held("tasks", 0) == [0, 1, 2, 3]
    finish[0].set()
    await asyncio.gather(*actors)
    assert sorted(released) == [0, 1, 2, 3]
    assert stream.acked == [0, 1, 2, 3]
    assert acks.held("tasks", 0) == []


async def test_partitions_do_not_wait_for_each_other() -> None:
    stream = _Stream([_Event(_Message("tasks", 0, 7)), _Event(_Message("tasks", 1, 8))])
    acks = InOrderAcks()
    slow = asyncio.Event()

    async def actor() -> None:
        async for event in acks.events(stream).events():
            if event.message.partition == 0:
                await slow.wait()

    actors = [asyncio.create_task(actor()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert stream.acked == [8]
    slow.set()
    await asyncio.gather(*actors)
    assert stream.acked == [8, 7]
