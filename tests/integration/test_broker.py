"""A real broker carries records between aiokafka and confluent-kafka, and keeps them.

The local broker keeps its data across a stop and a start, and reports its state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.errors import BrokerError

pytestmark = pytest.mark.integration

COUNT = 200
DEADLINE_S = 60.0

Record = tuple[bytes | None, bytes | None]


def _records(count: int = COUNT) -> list[Record]:
    return [(f"key-{i % 7}".encode(), f"value-{i}".encode()) for i in range(count)]


async def _produce_aiokafka(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, value=value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _consume_aiokafka(bootstrap: str, topic: str, group: str, count: int) -> list[Record]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[Record] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(received) < count:
                batches = await consumer.getmany(timeout_ms=500)
                received += [(m.key, m.value) for batch in batches.values() for m in batch]
    finally:
        await consumer.stop()
    return received


def _produce_confluent(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
    assert producer.flush(DEADLINE_S) == 0
    assert failures == []


def _consume_confluent(bootstrap: str, topic: str, group: str, count: int) -> list[Record]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            received.append((message.key(), message.value()))
    finally:
        consumer.close()
    return received


def _by_key(records: list[Record]) -> dict[bytes | None, list[bytes | None]]:
    """Values per key in arrival order: Kafka orders records per partition, hence per key."""
    grouped: dict[bytes | None, list[bytes | None]] = {}
    for key, value in records:
        grouped.setdefault(key, []).append(value)
    return grouped


async def test_aiokafka_producer_to_confluent_consumer(
    kafka_bootstrap: str, new_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=3)
    records = _records()
    await _produce_aiokafka(kafka_bootstrap, topic, records)
    received = await asyncio.to_thread(
        _consume_confluent, kafka_bootstrap, topic, unique_group(), len(records)
    )
    assert _by_key(received) == _by_key(records)


async def test_confluent_producer_to_aiokafka_consumer(
    kafka_bootstrap: str, new_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=3)
    records = _records()
    await asyncio.to_thread(_produce_confluent, kafka_bootstrap, topic, records)
    received = await _consume_aiokafka(kafka_bootstrap, topic, unique_group(), len(records))
    assert _by_key(received) == _by_key(records)


def _create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=2)])
    futures[name].result(timeout=DEADLINE_S)


def test_local_broker_keeps_its_data_across_a_restart(private_broker: BrokerSettings) -> None:
    settings = private_broker
    before = broker.status(settings)
    assert (before.running, before.answering, before.pid) == (False, False, None)

    first = broker.start(settings)
    assert first.running
    assert first.answering
    assert first.bootstrap == broker.bootstrap(settings)
    assert broker.start(settings).pid == first.pid  # already running: returns at once
    with pytest.raises(BrokerError, match="with other settings"):
        broker.start(settings.model_copy(update={"auto_create_topics": True}))
    records = _records(50)
    _create_topic(first.bootstrap, "survivor")
    _produce_confluent(first.bootstrap, "survivor", records)

    assert broker.stop(settings)
    stopped = broker.status(settings)
    assert (stopped.running, stopped.answering, stopped.pid) == (False, False, None)
    assert not broker.stop(settings)  # nothing left to stop

    second = broker.start(settings)
    assert second.running
    assert second.answering
    assert second.pid != first.pid
    received = _consume_confluent(second.bootstrap, "survivor", "restart-reader", len(records))
    assert _by_key(received) == _by_key(records)
