"""Reading a whole (small) topic from the beginning up to its end offsets at call time."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka import KafkaSettings


async def read_to_end(settings: KafkaSettings, topic: str) -> list[bytes]:
    """Every value of ``topic`` (all partitions, in order within each), then stop."""
    consumer = AIOKafkaConsumer(**settings.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        values: list[bytes] = []
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                values += [r.value for r in records if r.offset < ends[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return values
    finally:
        await consumer.stop()
