"""The stage loop: the one place that catches, so a bad event becomes a dead letter
with headers and never stops its partition."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from schemas.errors import DecodeError, GuardianError
from schemas.request_events import DeadLettered
from streams.runtime import Runtime

_log = logging.getLogger(__name__)
MAX_DEAD_PAYLOAD = 64 * 1024


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
    try:
        await handle(record)
    except Exception as exc:  # noqa: BLE001 - the stage loop is the one place that catches
        rt.metrics.stage_errors.labels(stage, type(exc).__name__).inc()
        await _dead_letter_or_log(rt, stage, record, exc)
        return "dead_letter"
    return "ok"


async def _dead_letter_or_log(rt: Runtime, stage: str, record: Record, exc: Exception) -> None:
    try:
        await dead_letter(rt, stage, record, exc)
    except Exception:  # noqa: BLE001 - an unsendable dead letter must not stop the partition
        _log.critical(
            "%s: could not dead-letter %s[%d]@%d",
            stage,
            record.topic,
            record.partition,
            record.offset,
            exc_info=True,
        )


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
    letter = DeadLettered(
        event_id=f"{record.topic}:{record.partition}:{record.offset}",
        request_id=request_id,
        occurred_at=rt.clock(),
        config_version=rt.config.version,
        stage=stage,
        error_class=type(exc).__name__,
        reason_code=code,
        reason=str(exc)[:2000],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        payload=record.value[:MAX_DEAD_PAYLOAD],
        payload_truncated=len(record.value) > MAX_DEAD_PAYLOAD,
    )
    headers = {
        "stage": stage.encode(),
        "error-class": type(exc).__name__.encode(),
        "reason-code": code.encode(),
        "source-topic": record.topic.encode(),
        "source-partition": str(record.partition).encode(),
        "source-offset": str(record.offset).encode(),
    }
    await rt.emit(letter, headers=headers)
    rt.metrics.dead_letters.labels(stage, code).inc()
