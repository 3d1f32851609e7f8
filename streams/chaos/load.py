"""The chaos run's open-loop load: request ``i`` is due at ``i / rate`` seconds whatever
the system does, and is sent until the broker acknowledges it (a broker away delays it;
its latency still counts from when it was due). Answers are counted as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.request_events import RequestSubmitted
from streams.chaos.model_server import QUESTIONS, TWICE

_log = logging.getLogger(__name__)
_RESEND_PAUSE_S = 0.5


def prompt(i: int) -> str:
    """Every other request needs a second round."""
    question = QUESTIONS[i % len(QUESTIONS)][0]
    return f"{TWICE} {question}" if i % 2 else question


@dataclass
class Load:
    settings: KafkaSettings
    requests_topic: str
    responses_topic: str
    sent: dict[str, float] = field(default_factory=dict)
    """request_id -> when it was due (epoch seconds)."""
    answered: set[str] = field(default_factory=set)
    codec: Codec = field(default_factory=Codec)

    async def send(self, requests: int, rate: float) -> None:
        producer = kafka_connect.producer(self.settings, acks="all", enable_idempotence=True)
        await kafka_connect.start(producer, self.settings)
        try:
            t0 = time.time()
            pending = []
            for i in range(requests):
                due = t0 + i / rate
                await asyncio.sleep(max(0.0, due - time.time()))  # open-loop pacing
                pending.append(asyncio.create_task(self._send_one(producer, i, due)))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def _send_one(self, producer: object, i: int, due: float) -> None:
        rid = uuid.uuid4().hex
        self.sent[rid] = due
        request = RequestSubmitted(
            event_id=rid,
            request_id=rid,
            occurred_at=datetime.fromtimestamp(due, UTC),
            prompt=prompt(i),
        )
        value = self.codec.encode(request)
        while True:
            try:
                acked = await producer.send(self.requests_topic, value, key=rid.encode())  # type: ignore[attr-defined]
                await acked
                return
            except KafkaError as exc:
                _log.info("request %s not sent yet (%r); trying again", rid, exc)
                await asyncio.sleep(_RESEND_PAUSE_S)  # the broker is away: try again

    async def follow(self, stop: asyncio.Event) -> None:
        """Count answers to the sent requests until ``stop`` is set."""
        consumer = kafka_connect.consumer(
            self.settings, self.responses_topic, auto_offset_reset="earliest"
        )
        await kafka_connect.start(consumer, self.settings)
        try:
            while not stop.is_set():
                with contextlib.suppress(KafkaError):
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            self._count(record.value)
        finally:
            await consumer.stop()

    def _count(self, value: bytes) -> None:
        try:
            rid = self.codec.decode_any(value).request_id
        except DecodeError:
            return
        if rid in self.sent:
            self.answered.add(rid)

    async def quiet(self, timeout_s: float) -> bool:
        """Until every sent request is answered (True) or ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while len(self.answered) < len(self.sent):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(1.0)  # polling the answer count inside a deadline
        return True
