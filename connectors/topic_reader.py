"""Reading a whole (small) topic from the beginning up to its end offsets at call time,
or the records of some partitions within a window of time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError
from schemas.topics import TopicSpec, qualified

E = TypeVar("E")
R = TypeVar("R", bound=Event)


async def partitions_of(settings: KafkaSettings, topic: str) -> list[int]:
    """The partition numbers of ``topic`` (empty when it does not exist)."""
    producer = kafka_connect.producer(settings)
    await kafka_connect.start(producer, settings)
    try:
        return sorted(await producer.partitions_for(topic))
    except KafkaError:
        return []
    finally:
        await kafka_connect.stop(producer)


async def read_partitions(settings: KafkaSettings, parts: list[TopicPartition]) -> list[Any]:
    """Every record of ``parts`` from the beginning up to the end offsets seen at the
    start (in order within each partition), then stop."""
    consumer = kafka_connect.consumer(settings)
    await kafka_connect.start(consumer, settings)
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        return await _read_until(consumer, await consumer.end_offsets(parts))
    finally:
        await kafka_connect.stop(consumer)


async def read_window(
    settings: KafkaSettings, parts: list[TopicPartition], since_ms: int, until_ms: int
) -> list[Any]:
    """The records of ``parts`` written from ``since_ms`` to ``until_ms``: the broker's
    time index gives both offsets, so only that stretch of each partition is read."""
    consumer = kafka_connect.consumer(settings)
    await kafka_connect.start(consumer, settings)
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in parts})
        stops = await consumer.offsets_for_times({tp: until_ms for tp in parts})
        bounds = {
            tp: (at.offset, stops[tp].offset if stops[tp] else ends[tp])
            for tp, at in starts.items()
            if at is not None
        }
        for tp, (start, _) in bounds.items():
            consumer.seek(tp, start)
        return await _read_until(consumer, {tp: stop for tp, (_, stop) in bounds.items()})
    finally:
        await kafka_connect.stop(consumer)


async def _read_until(consumer: Any, stops: dict[TopicPartition, int]) -> list[Any]:
    found: list[Any] = []
    pending = {tp for tp, stop in stops.items() if await consumer.position(tp) < stop}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            found += [r for r in records if r.offset < stops[tp]]
        pending = {tp for tp in pending if await consumer.position(tp) < stops[tp]}
    return found


async def read_decoded(
    settings: KafkaSettings, topic: str, decode: Callable[[bytes], E]
) -> list[E]:
    """Every record of ``topic`` decoded (``decode`` raising ``DecodeError`` skips one)."""
    found = []
    for value in await read_to_end(settings, topic):
        try:
            found.append(decode(value))
        except DecodeError:
            continue
    return found


async def read_records(
    settings: KafkaSettings, spec: TopicSpec, model: type[R], codec: Codec
) -> list[R]:
    """Every record of ``spec``'s topic (under the settings' namespace) as ``model``;
    one that does not decode is skipped."""
    topic = qualified(spec, settings.topic_namespace)
    return await read_decoded(settings, topic, lambda value: codec.decode(value, model))


async def read_to_end(settings: KafkaSettings, topic: str) -> list[bytes]:
    """Every value of ``topic`` (all partitions, in order within each), then stop."""
    parts = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not parts:
        return []
    return [record.value for record in await read_partitions(settings, parts)]
