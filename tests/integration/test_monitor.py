"""The lag monitor against a real consumer: partitions just assigned have no end offset
yet, and a revoked one raises; neither fails a sample."""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from streams.monitor import partition_lag
from tests.integration.conftest import TopicFactory


async def test_lag_skips_partitions_in_transition_and_counts_the_rest(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    name = new_topic(2)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    producer = kafka_connect.producer(kafka)
    await kafka_connect.start(producer, kafka)
    try:
        for i in range(5):
            await producer.send_and_wait(name, b"x", partition=0, key=str(i).encode())
    finally:
        await producer.stop()
    consumer = kafka_connect.consumer(kafka)
    await kafka_connect.start(consumer, kafka)
    try:
        p0, p1 = TopicPartition(name, 0), TopicPartition(name, 1)
        consumer.assign([p0])
        await consumer.seek_to_beginning(p0)
        assert consumer.highwater(p0) is None, "nothing fetched yet: no end offset"
        assert await partition_lag(consumer, p0) is None
        assert await partition_lag(consumer, p1) is None, "not assigned: no lag, no error"
        deadline = time.monotonic() + 30
        while consumer.highwater(p0) is None and time.monotonic() < deadline:
            await consumer.getmany(p0, timeout_ms=500, max_records=1)
        lag = await partition_lag(consumer, p0)
        position = await consumer.position(p0)
        assert lag == 5 - position
    finally:
        await consumer.stop()
