"""The decision trail of one request, read from the log: every event keyed by its
request_id across the request-scoped topics, in order.

Only the one partition each topic keeps the request in is read (the partition
is a function of the key), and only up to the end offsets seen at the start.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from connectors.kafka import KafkaSettings, partition_for
from connectors.schema_registry import codec_for
from connectors.topic_reader import read_partitions, read_window
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError
from schemas.topics import TopicSpec, qualified

REQUEST_SCOPED: tuple[TopicSpec, ...] = (
    topics.REQUESTS,
    topics.CONTEXTS,
    *topics.TASK_LANES,
    topics.ANSWERS,
    topics.VERDICTS,
    topics.DEADLINES,
    topics.RESPONSES,
)
# Order of the stages, to break ties between events of the same millisecond.
_STAGE_ORDER = {spec.record.record_name: i for i, spec in enumerate(REQUEST_SCOPED)}


async def read_trail(
    settings: KafkaSettings,
    request_id: str,
    partitions: int,
    *,
    window_ms: tuple[int, int] | None = None,
    codec: Codec | None = None,
) -> list[Event]:
    """Every event of ``request_id`` on the request-scoped topics, oldest first; with
    ``window_ms`` (since, until: broker timestamps), only what was written in it."""
    if codec is None:
        codec = await asyncio.to_thread(codec_for, settings)
    key = request_id.encode()
    home = partition_for(key, partitions)
    parts = [TopicPartition(qualified(s, settings.topic_namespace), home) for s in REQUEST_SCOPED]
    if window_ms is None:
        records = await read_partitions(settings, parts)
    else:
        records = await read_window(settings, parts, *window_ms)
    found = _decode_mine(codec, key, records)
    return sorted(found, key=lambda e: (e.occurred_at, _STAGE_ORDER.get(e.record_name, 99)))


def _decode_mine(codec: Codec, key: bytes, records: list) -> list[Event]:  # type: ignore[type-arg]
    events = []
    for record in records:
        if record.key != key:
            continue
        try:
            events.append(codec.decode_any(record.value))
        except DecodeError:
            continue
    return events


def describe(event: Event) -> str:
    """One line of a readable timeline."""
    at = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    return f"{at}  {event.record_name:<18} {_summary(event)}"


def _summary(e: Event) -> str:
    fields = e.model_dump()
    name = e.record_name
    if name == "RequestSubmitted":
        return f"prompt={_short(fields['prompt'])!r} priority={fields['priority']}"
    if name == "ContextProvided":
        return f"session={fields['session_id']} turns={fields['turns']} dropped={fields['dropped']}"
    if name == "TaskAssigned":
        critique = f" critique={_short(fields['critique'])!r}" if fields["critique"] else ""
        return (
            f"{_step(fields)} -> {fields['specialist']}@{fields['deployment']}"
            f"{_routing(fields)}{critique}"
        )
    if name == "SpecialistAnswered":
        body = fields["content"] if fields["status"] == "ok" else fields["error_kind"]
        return (
            f"{_step(fields)} {fields['status']} model={fields['model']} "
            f"{fields['latency_ms']:.0f}ms {_short(body)!r}"
        )
    if name == "VerdictIssued":
        verdict = "PASS" if fields["passed"] else "FAIL"
        scores = " ".join(f"{s['guardian']}={s['score']:.2f}" for s in fields["scores"])
        return f"{_step(fields)} {verdict} score={fields['score']:.2f} [{scores}]"
    if name == "ResponseDelivered":
        if fields["submission_id"] is not None:
            # Not the request's answer: the reply to another submission of its id.
            return (
                f"{fields['status']} ({fields['reason_code']}) to submission "
                f"{fields['submission_id']}, not the request's answer"
            )
        return (
            f"{fields['status']} confidence={fields['confidence']:.2f} "
            f"rounds={fields['rounds']} best_round={fields['best_round']}"
        )
    return ""


def _step(fields: dict[str, object]) -> str:
    """``round 2``, or ``facts round 2`` for a subtask of a decomposed request."""
    subtask = fields.get("subtask", "main")
    prefix = "" if subtask == "main" else f"{subtask} "
    return f"{prefix}round {fields['round']}"


def _routing(fields: dict[str, object]) -> str:
    """The router's reading of the request, on its first tasks."""
    if fields["round"] != 1 or not fields.get("complexity_level"):
        return ""
    return f" [{fields['task_class']}, {fields['complexity_level']}]"


def _short(text: str | None, width: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
