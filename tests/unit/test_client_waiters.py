"""GuardianClient leaves no waiter behind when a request fails before or while it is
sent (the producer is a stand-in for aiokafka's; no network)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from connectors.client import GuardianClient
from connectors.errors import PromptTooLargeError
from connectors.kafka import KafkaSettings
from schemas.codec import Codec


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
