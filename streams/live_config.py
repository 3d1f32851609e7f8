"""The live configuration of a worker: the latest ``ConfigChanged`` on the compacted
config topic, followed continuously and applied without a restart.

Every worker reads the whole topic (no consumer group): configuration is global.
Until the topic holds a version, the configuration built from settings (version 0)
applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.config import PipelineConfig
from agents.config_values import ConfigValueError, config_of
from connectors.config_log import config_topic
from connectors.topic_reader import partitions_of
from schemas.errors import DecodeError
from schemas.network_events import ConfigChanged
from streams import background
from streams.runtime import Runtime

_log = logging.getLogger(__name__)
HISTORY_KEPT = 100


@dataclass
class LiveConfig:
    """Versions seen, newest last, and a hook for whoever must follow them."""

    history: list[ConfigChanged] = field(default_factory=list)
    listeners: list[Callable[[PipelineConfig], None]] = field(default_factory=list)

    def apply(self, rt: Runtime, event: ConfigChanged) -> bool:
        """Adopt ``event`` if it is newer than the live version and valid."""
        if event.version <= rt.config.version:
            return False
        try:
            config = config_of(event)
        except ConfigValueError as exc:
            _log.error("config version %d refused: %s", event.version, exc)
            return False
        rt.config = config
        self.history = [*self.history, event][-HISTORY_KEPT:]
        for listener in self.listeners:
            listener(config)
        _log.warning(
            "config version %d applied (%s by %s: %s)",
            event.version,
            ", ".join(event.changed_keys),
            event.changed_by,
            event.reason,
        )
        return True


def register(rt: Runtime) -> LiveConfig:
    live = LiveConfig()

    @background.task(rt, "config_follower")
    async def follow_config() -> None:
        await follow(rt, live)

    return live


async def follow(rt: Runtime, live: LiveConfig) -> None:
    """Read the config topic from the beginning and keep applying newer versions."""
    topic = config_topic(rt.settings.kafka)
    consumer = AIOKafkaConsumer(**rt.settings.kafka.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        numbers = await partitions_of(rt.settings.kafka, topic) or [0]
        parts = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        async for message in consumer:
            try:
                live.apply(rt, rt.codec.decode(message.value, ConfigChanged))
            except DecodeError as exc:
                _log.error("undecodable config record at offset %d: %s", message.offset, exc)
    finally:
        await consumer.stop()
