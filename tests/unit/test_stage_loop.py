"""The stage loop: transient errors are retried, permanent ones dead-lettered, and a
record's sends are acknowledged before it counts as handled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError
from faust.exceptions import ProducerSendError

from agents.config import PipelineConfig
from schemas.errors import DecodeError, DecodeReason, GuardianError
from schemas.request_events import DeadLettered
from streams import runtime as rt_module
from streams import stage
from streams.dead_letters import DeadLetterSettings
from streams.metrics import Metrics
from streams.runtime import sends_of_record
from streams.stage import Backoff, Record, transient

RECORD = Record(topic="t", partition=2, offset=7, key=b"r-1", value=b"\x00")


class Retriable(GuardianError):
    retriable = True


class FakeRuntime:
    """What the stage loop uses of a runtime: metrics, clock, config and emit."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.config = PipelineConfig(version=3)
        self.sent: list[Any] = []
        # Dead letters keep the raw payload; no PII detector is consulted.
        self.settings = SimpleNamespace(dead_letter=DeadLetterSettings(payload="raw"), pii=None)
        self.ports = SimpleNamespace(pii=None)

    def clock(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    async def emit(self, event: Any, **_: Any) -> None:
        self.sent.append(event)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "RETRY_DELAY_S", (0.0, 0.0))


def failing(times: int, error: BaseException) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def handle(_: Record) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise error

    return calls, handle


@pytest.mark.parametrize(
    "error",
    [
        KafkaTimeoutError(),
        KafkaConnectionError(),
        Retriable("cache away"),
        ProducerSendError("send failed"),
    ],
    ids=["producer-timeout", "connection", "retriable-flag", "wrapped"],
)
async def test_a_transient_error_is_retried_not_dead_lettered(error: BaseException) -> None:
    if isinstance(error, ProducerSendError):
        error.__cause__ = KafkaConnectionError()
    rt = FakeRuntime()
    calls, handle = failing(3, error)
    outcome = await stage._handle_one(rt, "intake", RECORD, handle)  # type: ignore[arg-type]
    assert outcome == "ok"
    assert len(calls) == 4
    assert rt.sent == []
    assert rt.metrics.send_retries.labels("intake")._value.get() == 3


async def test_a_permanent_error_is_dead_lettered_once() -> None:
    rt = FakeRuntime()
    calls, handle = failing(10, DecodeError(DecodeReason.TRUNCATED, "short"))
    outcome = await stage._handle_one(rt, "intake", RECORD, handle)  # type: ignore[arg-type]
    assert outcome == "dead_letter"
    assert len(calls) == 1
    [letter] = rt.sent
    assert isinstance(letter, DeadLettered)
    assert (letter.reason_code, letter.source_partition, letter.source_offset) == (
        "truncated",
        2,
        7,
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KafkaTimeoutError(), True),
        (UnknownTopicOrPartitionError(), True),
        (ValueError("bad"), False),
        (GuardianError("no"), False),
        (Retriable("yes"), True),
    ],
)
def test_transient_reads_the_flag_and_the_cause(error: BaseException, expected: bool) -> None:
    assert transient(error) is expected
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = error
    assert transient(wrapper) is expected


def test_backoff_doubles_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "RETRY_DELAY_S", (0.5, 3.0))
    b = Backoff()
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_sends_of_a_record_are_awaited_before_it_is_done() -> None:
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[None] = loop.create_future()

    async def handler() -> None:
        pending = rt_module._PENDING.get()
        assert pending is not None, "a record's sends are collected"
        pending.append(acked)

    async def scope() -> None:
        async with sends_of_record():
            await handler()

    done = asyncio.ensure_future(scope())
    for _ in range(3):  # let the scope run as far as it can without the acknowledgement
        await asyncio.sleep(0)
    assert not done.done(), "the record waits for the broker's acknowledgement"
    acked.set_result(None)
    await done


async def test_a_failed_send_fails_the_record() -> None:
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[None] = loop.create_future()
    failed.set_exception(KafkaTimeoutError())

    async def record_with_a_failed_send() -> None:
        async with sends_of_record():
            pending = rt_module._PENDING.get()
            assert pending is not None
            pending.append(failed)

    with pytest.raises(KafkaTimeoutError):
        await record_with_a_failed_send()
    assert rt_module._PENDING.get() is None, "outside a record, sends are awaited in place"
