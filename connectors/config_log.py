"""The configuration log: every ``ConfigChanged`` on the compacted config topic, and
publishing a new version."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from connectors.kafka import KafkaSettings
from connectors.schema_registry import codec_for
from connectors.topic_reader import read_to_end
from schemas import topics
from schemas.errors import DecodeError
from schemas.network_events import ConfigChanged


def config_topic(settings: KafkaSettings) -> str:
    return topics.qualified(topics.CONFIG, settings.topic_namespace)


async def read_config_history(settings: KafkaSettings) -> list[ConfigChanged]:
    """Every readable version on the topic (compaction keeps at least the latest),
    oldest first."""
    codec = codec_for(settings)
    events = []
    for value in await read_to_end(settings, config_topic(settings)):
        try:
            events.append(codec.decode(value, ConfigChanged))
        except DecodeError:
            continue
    return sorted(events, key=lambda e: e.version)


async def publish_config(settings: KafkaSettings, event: ConfigChanged) -> None:
    codec = codec_for(settings)
    producer = AIOKafkaProducer(**settings.aiokafka(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            config_topic(settings), codec.encode(event), key=event.request_id.encode()
        )
    finally:
        await producer.stop()
