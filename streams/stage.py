"""The stage loop: the one place that catches, so a bad event becomes a dead letter
with headers and never stops its partition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from schemas.errors import DecodeError, GuardianError
from schemas.request_events import DeadLettered
from streams.dead_letters import kept
from streams.runtime import Runtime, sends_of_record

_log = logging.getLogger(__name__)
MAX_DEAD_PAYLOAD = 64 * 1024
_ALSO_TRANSIENT = (KafkaTimeoutError,)
"""Transient though not flagged: aiokafka's timeout of a send or request (the broker
away or slow) says ``retriable = False``."""
RETRY_DELAY_S = (0.2, 10.0)
"""First and longest pause before a record that met a transient error is handled again."""


@dataclass(frozen=True)
class Record:
    """One consumed record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class StageError(GuardianError):
    """A record a stage refuses for a reason of its own (``reason_code`` is a closed label)."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


Handler = Callable[[Record], Awaitable[None]]


async def run(rt: Runtime, stage: str, stream: Any, handle: Handler) -> None:
    """Feed every record of ``stream`` to ``handle``; dead-letter what fails."""
    async for event in stream.events():
        msg = event.message
        value = event.value if isinstance(event.value, bytes) else b""
        record = Record(msg.topic, msg.partition, msg.offset, msg.key, value)
        started = time.perf_counter()
        outcome = await _handle_one(rt, stage, record, handle)
        rt.metrics.stage_events.labels(stage, outcome).inc()
        rt.metrics.stage_seconds.labels(stage).observe(time.perf_counter() - started)


async def _handle_one(rt: Runtime, stage: str, record: Record, handle: Handler) -> str:
    """Handle ``record`` until it is done: a transient error (the broker away, a send
    not acknowledged) is retried with backoff while the record's partition waits; any
    other error dead-letters the record."""
    backoff = Backoff()
    while True:
        try:
            async with sends_of_record():
                await handle(record)
        except Exception as exc:  # noqa: BLE001 - the stage loop is the one place that catches
            if transient(exc):
                await _retry_later(rt, stage, record, exc, backoff)
                continue
            rt.metrics.stage_errors.labels(stage, type(exc).__name__).inc()
            await _dead_letter_or_log(rt, stage, record, exc)
            return "dead_letter"
        return "ok"


def transient(exc: BaseException) -> bool:
    """Whether trying again can help: the error, or one it was raised from, says so."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "retriable", False) or isinstance(seen, _ALSO_TRANSIENT):
            return True
        seen = seen.__cause__
    return False


@dataclass
class Backoff:
    """Exponential pauses between tries, capped: ``RETRY_DELAY_S`` (first, longest)."""

    delay_s: float = 0.0

    def next(self) -> float:
        first, longest = RETRY_DELAY_S
        self.delay_s = first if not self.delay_s else min(self.delay_s * 2, longest)
        return self.delay_s


async def _retry_later(
    rt: Runtime, stage: str, record: Record, exc: BaseException, backoff: Backoff
) -> None:
    delay = backoff.next()
    rt.metrics.send_retries.labels(stage).inc()
    _log.warning(
        "%s: transient error on %s[%d]@%d, trying again in %.1fs: %r",
        stage,
        record.topic,
        record.partition,
        record.offset,
        delay,
        exc,
    )
    await asyncio.sleep(delay)


async def _dead_letter_or_log(rt: Runtime, stage: str, record: Record, exc: Exception) -> None:
    backoff = Backoff()
    while True:
        try:
            await dead_letter(rt, stage, record, exc)
            return
        except Exception as failure:  # noqa: BLE001 - an unsendable dead letter must not stop the partition
            if transient(failure):
                await _retry_later(rt, stage, record, failure, backoff)
                continue
            _log.critical(
                "%s: could not dead-letter %s[%d]@%d",
                stage,
                record.topic,
                record.partition,
                record.offset,
                exc_info=True,
            )
            return


def _reason_code(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return exc.reason.value
    if isinstance(exc, StageError):
        return exc.reason_code
    return "internal"


async def dead_letter(rt: Runtime, stage: str, record: Record, exc: BaseException) -> None:
    code = _reason_code(exc)
    level = logging.WARNING if isinstance(exc, GuardianError) else logging.ERROR
    _log.log(
        level,
        "%s: dead-lettering %s[%d]@%d: %s (%s)",
        stage,
        record.topic,
        record.partition,
        record.offset,
        exc,
        code,
        exc_info=level == logging.ERROR,
    )
    request_id = (record.key or b"").decode("utf-8", "replace")
    mode = rt.settings.dead_letter.payload
    payload, reason = await kept(
        mode, record.value[:MAX_DEAD_PAYLOAD], str(exc)[:2000], rt.ports.pii, rt.settings.pii
    )
    letter = DeadLettered(
        event_id=f"{record.topic}:{record.partition}:{record.offset}",
        request_id=request_id,
        occurred_at=rt.clock(),
        config_version=rt.config.version,
        stage=stage,
        error_class=type(exc).__name__,
        reason_code=code,
        reason=reason,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        payload=payload,
        payload_truncated=len(record.value) > MAX_DEAD_PAYLOAD,
    )
    headers = {
        "stage": stage.encode(),
        "error-class": type(exc).__name__.encode(),
        "reason-code": code.encode(),
        "source-topic": record.topic.encode(),
        "source-partition": str(record.partition).encode(),
        "source-offset": str(record.offset).encode(),
        "payload": mode.encode(),
    }
    await rt.emit(letter, headers=headers)
    rt.metrics.dead_letters.labels(stage, code).inc()
