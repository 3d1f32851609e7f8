"""GuardianClient: submit requests and await their one final response over Kafka.

Each ``ask()`` waits for the answer to its own submission. A response naming a
submission (``submission_id``: the rejection of a conflicting resend) goes to that
submission's waiter alone; any other response of a request is its final answer and goes
to the waiters of the request's first payload, never to those of a resend with another
payload.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from agents.intake import payload_digest
from connectors import kafka_connect
from connectors.errors import PromptTooLargeError, ResponseTimeoutError
from connectors.kafka import KafkaSettings
from connectors.schema_registry import codec_for
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError
from schemas.request_events import FeedbackGiven, RequestSubmitted, ResponseDelivered
from schemas.topics import TopicSpec, qualified


@dataclass
class _Waiting:
    """The submissions of one request id waiting for their answer, in the order sent."""

    digest: str
    """The payload of the request's first waiting submission: what its final answer answers."""
    futures: dict[str, asyncio.Future[ResponseDelivered]] = field(default_factory=dict)
    """By submission (the event id of its RequestSubmitted)."""
    digests: dict[str, str] = field(default_factory=dict)

    def resolve(self, response: ResponseDelivered) -> None:
        if response.submission_id is not None:
            named = [response.submission_id]
        else:
            named = [s for s, d in self.digests.items() if d == self.digest]
        for submission in named:
            future = self.futures.get(submission)
            if future is not None and not future.done():
                future.set_result(response)


class GuardianClient:
    """An async client: ``ask()`` submits a prompt and waits for its final answer.

    Responses are read from the end of the responses topic as they arrive (no
    consumer group), so any number of clients can wait side by side.

    ``max_prompt_chars`` is intake's limit (``GUARDIAN_REFINE_MAX_PROMPT_CHARS``): a
    longer prompt is refused here, before anything is produced, as is a request
    larger than the producer may send (``GUARDIAN_KAFKA_MAX_REQUEST_BYTES``).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        codec: Codec | None = None,
        max_prompt_chars: int | None = None,
        on_response: Callable[[ResponseDelivered], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_response = on_response
        """Told of every response the shared reader sees (an index of recent requests)."""
        self._codec = codec
        self._max_prompt_chars = max_prompt_chars
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._waiters: dict[str, _Waiting] = {}
        """By request id."""
        self._reader: asyncio.Task[None] | None = None
        self._follow_lock = asyncio.Lock()
        self._requests = qualified(topics.REQUESTS, settings.topic_namespace)
        self._responses = qualified(topics.RESPONSES, settings.topic_namespace)
        self._feedback = qualified(topics.FEEDBACK, settings.topic_namespace)

    @property
    def codec(self) -> Codec:
        assert self._codec is not None, "start() the client first"
        return self._codec

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._codec is None:
            # Registering schemas with a registry (when one is configured) is blocking HTTP.
            self._codec = await asyncio.to_thread(codec_for, self._settings)
        producer = kafka_connect.producer(self._settings, acks="all", linger_ms=0)
        await kafka_connect.start(producer, self._settings)
        self._producer = producer

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await kafka_connect.stop(self._consumer)
        if self._producer is not None:
            await kafka_connect.stop(self._producer)

    async def submit(self, prompt: str, **fields: Any) -> RequestSubmitted:
        """Send one request; returns it (its ``request_id`` names the answer to wait for,
        its ``event_id`` the submission a conflict rejection names)."""
        request = self._request(prompt, fields)
        await self._send(request)
        return request

    def _request(self, prompt: str, fields: dict[str, Any]) -> RequestSubmitted:
        self._check_prompt(prompt)
        return RequestSubmitted(
            event_id=uuid.uuid4().hex,
            request_id=fields.pop("request_id", None) or uuid.uuid4().hex,
            occurred_at=datetime.now(tz=UTC),
            prompt=prompt,
            **fields,
        )

    async def _send(self, request: RequestSubmitted) -> None:
        assert self._producer is not None, "start() the client first"
        key, value = request.request_id.encode(), self.codec.encode(request)
        self._check_size(key, value)
        await self.send_raw(key, value)

    def _check_prompt(self, prompt: str) -> None:
        limit = self._max_prompt_chars
        if limit is not None and len(prompt) > limit:
            raise PromptTooLargeError(
                f"the prompt has {len(prompt)} characters; intake accepts at most {limit} "
                "(GUARDIAN_REFINE_MAX_PROMPT_CHARS); nothing was sent"
            )

    def _check_size(self, key: bytes, value: bytes) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
        limit = self._settings.max_request_bytes
        if size > limit:
            raise PromptTooLargeError(
                f"the request is {size} bytes encoded; the producer sends at most {limit} "
                "(GUARDIAN_KAFKA_MAX_REQUEST_BYTES); nothing was sent"
            )

    async def feedback(
        self,
        request_id: str,
        *,
        rating: float | None = None,
        signal: str | None = None,
        comment: str | None = None,
        user_id: str | None = None,
    ) -> FeedbackGiven:
        """Rate an answer (0.0-1.0), or report an implicit signal (accepted, copied,
        regenerated, abandoned, edited)."""
        assert self._producer is not None, "start() the client first"
        if rating is None and signal is None:
            raise ValueError("feedback needs a rating or a signal")
        if rating is not None and not 0.0 <= rating <= 1.0:
            raise ValueError(f"rating {rating} is outside 0.0..1.0")
        event = FeedbackGiven(
            event_id=uuid.uuid4().hex,
            request_id=request_id,
            occurred_at=datetime.now(tz=UTC),
            kind="explicit" if rating is not None else "implicit",
            rating=rating,
            signal=signal,
            comment=comment,
            user_id=user_id,
        )
        await self._producer.send_and_wait(
            self._feedback, self.codec.encode(event), key=request_id.encode()
        )
        return event

    async def send_to(self, spec: TopicSpec, event: Event) -> None:
        """Publish an event to its topic (operators' proposals, tooling)."""
        assert self._producer is not None, "start() the client first"
        topic = qualified(spec, self._settings.topic_namespace)
        await self._producer.send_and_wait(
            topic, self.codec.encode(event), key=event.request_id.encode()
        )

    async def send_raw(self, key: bytes, value: bytes) -> None:
        """Produce bytes as they are (operators' tooling and tests of bad input)."""
        assert self._producer is not None, "start() the client first"
        await self._producer.send_and_wait(self._requests, key=key, value=value)

    async def ask(
        self, prompt: str, *, timeout_s: float = 120.0, **fields: Any
    ) -> ResponseDelivered:
        """Submit and wait for the response to this submission: the request's final
        answer, or, for a resend of a known request id with another payload, its own
        ``conflict`` rejection. A failure of any step (a prompt too large, the broker
        away, no answer in time) leaves no waiter behind."""
        request = self._request(prompt, fields)
        await self._follow()
        waiter = self._wait_on(request)
        try:
            await self._send(request)
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError as exc:
            raise ResponseTimeoutError(
                f"no response for {request.request_id} within {timeout_s:.0f}s"
            ) from exc
        finally:
            self._stop_waiting(request)

    @property
    def pending(self) -> int:
        """Submissions waiting for their response."""
        return sum(len(w.futures) for w in self._waiters.values())

    def _wait_on(self, request: RequestSubmitted) -> asyncio.Future[ResponseDelivered]:
        digest = payload_digest(request)
        waiting = self._waiters.setdefault(request.request_id, _Waiting(digest))
        future = asyncio.get_running_loop().create_future()
        waiting.futures[request.event_id] = future
        waiting.digests[request.event_id] = digest
        return future

    def _stop_waiting(self, request: RequestSubmitted) -> None:
        waiting = self._waiters.get(request.request_id)
        if waiting is None:
            return
        waiting.futures.pop(request.event_id, None)
        waiting.digests.pop(request.event_id, None)
        if not waiting.futures:
            del self._waiters[request.request_id]

    async def responses(self, *, from_beginning: bool = False) -> AsyncIterator[ResponseDelivered]:
        """Every response as it arrives (undecodable records are skipped)."""
        consumer = await self._open_consumer(from_beginning=from_beginning)
        try:
            async for message in consumer:
                try:
                    yield self.codec.decode(message.value, ResponseDelivered)
                except DecodeError:
                    continue
        finally:
            await kafka_connect.stop(consumer)

    async def partitions(self, topic: str) -> set[int]:
        """The partitions of ``topic`` (empty when it does not exist), from fresh cluster
        metadata: asking for the topic itself could create it on a broker that
        auto-creates topics."""
        assert self._producer is not None, "start() the client first"
        metadata = await self._producer.client.fetch_all_metadata()
        return set(metadata.partitions_for_topic(topic) or ())

    async def follow(self) -> None:
        """Start reading responses now (``ask`` starts it on first use): every one is
        given to ``on_response``."""
        await self._follow()

    async def _follow(self) -> None:
        async with self._follow_lock:
            if self._reader is None:
                self._consumer = await self._open_consumer(from_beginning=False)
                self._reader = asyncio.create_task(self._read(self._consumer))

    async def _open_consumer(self, *, from_beginning: bool) -> AIOKafkaConsumer:
        assert self._producer is not None, "start() the client first"
        try:
            parts = await self._producer.partitions_for(self._responses)
        except KafkaError as exc:
            raise ResponseTimeoutError(f"topic {self._responses} is not available: {exc}") from exc
        consumer = kafka_connect.consumer(self._settings)
        await kafka_connect.start(consumer, self._settings)
        assigned = [TopicPartition(self._responses, p) for p in sorted(parts)]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
            for tp in assigned:  # resolve the end offsets now, before anything is submitted
                await consumer.position(tp)
        return consumer

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        async for message in consumer:
            try:
                response = self.codec.decode(message.value, ResponseDelivered)
            except DecodeError:
                continue
            if self._on_response is not None:
                self._on_response(response)
            waiting = self._waiters.get(response.request_id)
            if waiting is not None:
                waiting.resolve(response)
