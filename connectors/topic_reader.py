"""Reading a whole (small) topic from the beginning up to its end offsets at call time."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from connectors import kafka_connect
from connectors.kafka import KafkaSettings


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
        ends = await consumer.end_offsets(parts)
        found: list[Any] = []
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                found += [r for r in records if r.offset < ends[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await kafka_connect.stop(consumer)


async def read_to_end(settings: KafkaSettings, topic: str) -> list[bytes]:
    """Every value of ``topic`` (all partitions, in order within each), then stop."""
    parts = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not parts:
        return []
    return [record.value for record in await read_partitions(settings, parts)]
