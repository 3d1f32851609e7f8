"""The two config topics on the wire: reading the history log from an offset, reading
the tail of the current view, and appending to either. No decisions here: which
records count is ``agents.config_history``'s fold.

Two headers tie the topics together. A current-view record names the history offset
of its version (``guardian-history-offset``); a history record names the history
offset of the version it builds on (``guardian-previous-offset``), so the recent
versions can be walked back from the latest without reading the whole log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.config_history import Logged
from connectors.admin import ensure_topics, update_configs
from connectors.kafka import KafkaSettings
from connectors.schema_registry import codec_for
from connectors.topic_reader import partitions_of
from schemas import topics
from schemas.errors import DecodeError
from schemas.network_events import ConfigChanged

_log = logging.getLogger(__name__)
HISTORY_OFFSET = "guardian-history-offset"
PREVIOUS_OFFSET = "guardian-previous-offset"
TAIL = 16
"""Records of the current view read from its end to find the latest hint."""
KEPT_FOREVER = {"retention.bytes": "-1"}
READ_BACK_S = 10.0
"""How long one step back through the history may wait for its record."""


def config_topic(settings: KafkaSettings) -> str:
    """The compacted current view (one key): the latest version, cheap to find."""
    return topics.qualified(topics.CONFIG, settings.topic_namespace)


def history_topic(settings: KafkaSettings) -> str:
    """The append-only history: every version ever accepted, kept forever."""
    return topics.qualified(topics.CONFIG_HISTORY, settings.topic_namespace)


async def ensure_config_topics(settings: KafkaSettings) -> None:
    """Create the config topics if missing (an older deployment has no history yet)."""
    await asyncio.to_thread(_ensure, settings)


def _ensure(settings: KafkaSettings) -> None:
    ensure_topics(settings, topics.CONFIG_TOPICS, tables=())
    # A cluster-wide size limit must not trim the history either.
    update_configs(AdminClient(settings.confluent()), {history_topic(settings): KEPT_FOREVER})


@dataclass(frozen=True)
class Hint:
    """Where the current view says the latest version sits in the history."""

    version: int
    event_id: str
    offset: int


def header(record: Any, name: str) -> int | None:
    """An integer header of a consumer record, if present and well-formed."""
    for key, value in record.headers or ():
        if key == name:
            try:
                return int(value.decode())
            except (UnicodeDecodeError, ValueError):
                return None
    return None


def _decoded(settings: KafkaSettings, records: Sequence[Any]) -> list[tuple[Any, ConfigChanged]]:
    codec = codec_for(settings)
    found = []
    for record in records:
        try:
            found.append((record, codec.decode(record.value, ConfigChanged)))
        except DecodeError as exc:
            _log.error("undecodable config record at offset %d: %s", record.offset, exc)
    return found


async def read_records(settings: KafkaSettings, topic: str, first: int | None) -> list[Any]:
    """The records of partition 0 of ``topic`` from ``first`` (None: the last ``TAIL``)
    up to the end offset seen at the start."""
    if not await partitions_of(settings, topic):
        return []
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(**settings.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        start = max(begin, end - TAIL if first is None else first)
        consumer.seek(tp, start)
        found: list[Any] = []
        while start < end and await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            found += [r for r in batch.get(tp, []) if r.offset < end]
        return found
    finally:
        await consumer.stop()


async def read_history(settings: KafkaSettings, first: int = 0) -> list[Logged]:
    """The history records from offset ``first`` to the end, in log order."""
    records = await read_records(settings, history_topic(settings), first)
    return [Logged(r.offset, e) for r, e in _decoded(settings, records)]


async def read_hint(settings: KafkaSettings) -> Hint | None:
    """The highest version of the current view's tail that names its history offset."""
    records = await read_records(settings, config_topic(settings), None)
    hints = [
        Hint(e.version, e.event_id, offset)
        for r, e in _decoded(settings, records)
        if (offset := header(r, HISTORY_OFFSET)) is not None
    ]
    return max(hints, key=lambda h: h.version, default=None)


async def read_seed(settings: KafkaSettings) -> ConfigChanged | None:
    """The latest version on the current view, hint or not: what an older deployment
    (a compacted config topic and no history) migrates from."""
    events = [
        e for _, e in _decoded(settings, await read_records(settings, config_topic(settings), 0))
    ]
    return max(events, key=lambda e: e.version, default=None)


async def read_back(settings: KafkaSettings, offset: int, hops: int) -> list[Logged]:
    """The history record at ``offset`` and up to ``hops`` versions before it, newest
    first, following the previous-offset headers."""
    tp = TopicPartition(history_topic(settings), 0)
    consumer = AIOKafkaConsumer(**settings.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    found: list[Logged] = []
    try:
        consumer.assign([tp])
        next_offset: int | None = offset
        while next_offset is not None and len(found) <= hops:
            consumer.seek(tp, next_offset)
            try:
                record = await asyncio.wait_for(consumer.getone(tp), timeout=READ_BACK_S)
            except TimeoutError:
                _log.warning(
                    "history offset %d did not arrive; walked back no further", next_offset
                )
                break
            decoded = _decoded(settings, [record])
            if record.offset != next_offset or not decoded:
                break
            found.append(Logged(record.offset, decoded[0][1]))
            next_offset = header(record, PREVIOUS_OFFSET)
        return found
    finally:
        await consumer.stop()


async def append(
    settings: KafkaSettings, topic: str, key: str, event: ConfigChanged, headers: dict[str, int]
) -> int:
    """Write ``event`` once (an idempotent producer) and return its offset."""
    producer = AIOKafkaProducer(**settings.aiokafka(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topic,
            codec_for(settings).encode(event),
            key=key.encode(),
            headers=[(k, str(v).encode()) for k, v in headers.items()],
        )
        return int(meta.offset)
    finally:
        await producer.stop()
