"""GuardianClient leaves no waiter behind when a request fails before or while it is
sent, and hands each submission its own answer (the producer and the responses read
are stand-ins for aiokafka's; no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from connectors.client import GuardianClient
from connectors.errors import PromptTooLargeError
from connectors.kafka import KafkaSettings
from schemas.codec import Codec
from schemas.request_events import RequestSubmitted, ResponseDelivered


class RefusingProducer:
    """aiokafka's producer as seen by the client, with the broker never acknowledging."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_and_wait(self, *_: Any, **__: Any) -> None:
        self.sent += 1
        raise KafkaTimeoutError("no acknowledgement")


@pytest.fixture
async def client() -> GuardianClient:
    client = GuardianClient(KafkaSettings.of(), codec=Codec(), max_prompt_chars=100)
    client._producer = RefusingProducer()
    # Responses are already followed: ask() goes straight to sending.
    client._reader = asyncio.create_task(asyncio.sleep(0))
    return client


async def test_a_failed_send_leaves_no_waiter(client: GuardianClient) -> None:
    with pytest.raises(KafkaTimeoutError):
        await client.ask("What is the capital of France?", timeout_s=1)
    assert client.pending == 0


async def test_a_too_long_prompt_is_refused_before_sending(client: GuardianClient) -> None:
    with pytest.raises(PromptTooLargeError, match="101 characters; intake accepts at most 100"):
        await client.ask("x" * 101, timeout_s=1)
    with pytest.raises(PromptTooLargeError):
        await client.submit("x" * 101)
    assert client.pending == 0
    assert client._producer.sent == 0  # type: ignore[union-attr]


async def test_a_request_over_the_producer_limit_is_refused_before_sending() -> None:
    client = GuardianClient(KafkaSettings.of(max_request_bytes=2048), codec=Codec())
    client._producer = producer = RefusingProducer()
    with pytest.raises(PromptTooLargeError, match="the producer sends at most 2048") as caught:
        await client.submit("y" * 3000)
    assert not caught.value.retriable
    assert producer.sent == 0


class AcceptingProducer:
    """aiokafka's producer as seen by the client, acknowledging every send."""

    def __init__(self) -> None:
        self.sent: list[RequestSubmitted] = []

    async def send_and_wait(self, _topic: str, *, key: bytes, value: bytes) -> None:
        self.sent.append(Codec().decode(value, RequestSubmitted))


async def responses_arrive(client: GuardianClient, *responses: ResponseDelivered) -> None:
    async def records() -> AsyncIterator[SimpleNamespace]:
        for response in responses:
            yield SimpleNamespace(value=client.codec.encode(response))

    await client._read(records())


def answer(request: RequestSubmitted, **fields: Any) -> ResponseDelivered:
    return ResponseDelivered(
        event_id=f"answer-{fields.get('submission_id')}",
        request_id=request.request_id,
        occurred_at=request.occurred_at,
        status=fields.pop("status", "passed"),
        **fields,
    )


@pytest.mark.parametrize("conflict_first", [True, False])
async def test_a_conflicting_resend_and_the_original_each_get_their_own_answer(
    conflict_first: bool,
) -> None:
    client = GuardianClient(KafkaSettings.of(), codec=Codec())
    client._producer = producer = AcceptingProducer()
    client._reader = asyncio.create_task(asyncio.sleep(0))
    original = asyncio.create_task(client.ask("What is 2+2?", request_id="r", timeout_s=5))
    await asyncio.sleep(0.01)
    resend = asyncio.create_task(client.ask("Something else?", request_id="r", timeout_s=5))
    again = asyncio.create_task(client.ask("What is 2+2?", request_id="r", timeout_s=5))
    await asyncio.sleep(0.01)
    first, second, third = producer.sent
    assert client.pending == 3
    final = answer(first, content="4")
    rejection = answer(
        second, status="rejected", reason_code="conflict", submission_id=second.event_id
    )
    ordered = (rejection, final) if conflict_first else (final, rejection)
    await responses_arrive(client, *ordered)
    assert await original == final
    assert await again == final, "a resend of the same payload gets the same answer"
    assert await resend == rejection
    assert client.pending == 0
    assert third.request_id == "r"
