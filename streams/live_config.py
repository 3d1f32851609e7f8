"""The live configuration of a worker: the latest accepted version of the config
history, followed continuously and applied without a restart.

Every worker reads the history itself (no consumer group): configuration is global.
At start the worker starts the history if it is empty (version 0 from its settings,
or the latest version of an older deployment's config topic; of several workers
starting at once the first record wins), finds the latest version through the
current view, loads a few versions before it for the safety monitor's rate limits,
and then follows the history from there, applying each accepted version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.config import PipelineConfig
from agents.config_history import differing_keys, extends, genesis
from agents.config_values import ConfigValueError, config_of, to_values
from agents.ids import stable_id
from connectors.config_log import ensure_history
from connectors.config_topics import history_topic, read_back
from schemas.errors import DecodeError
from schemas.network_events import ConfigChanged
from streams import background
from streams.runtime import Runtime

_log = logging.getLogger(__name__)
HISTORY_KEPT = 100
RECENT_ON_START = 20
"""Versions before the latest loaded at start (the safety monitor counts recent changes)."""


@dataclass
class LiveConfig:
    """Versions seen, newest last, and a hook for whoever must follow them."""

    history: list[ConfigChanged] = field(default_factory=list)
    listeners: list[Callable[[PipelineConfig], None]] = field(default_factory=list)
    latest: ConfigChanged | None = None
    """The latest accepted version seen (applied unless its values were refused)."""

    def remember(self, earlier: list[ConfigChanged]) -> None:
        """Versions before the first one applied, oldest first (once, at start)."""
        if self.latest is None:
            self.history = earlier[-HISTORY_KEPT:]

    def apply(self, rt: Runtime, event: ConfigChanged) -> bool:
        """Adopt ``event`` if it is newer than the latest version seen and valid."""
        if self.latest is not None and event.version <= self.latest.version:
            return False
        self.latest = event
        self.history = [*self.history, event][-HISTORY_KEPT:]
        try:
            config = config_of(event)
        except ConfigValueError as exc:
            _log.error("config version %d refused: %s", event.version, exc)
            return False
        rt.config = config
        for listener in self.listeners:
            listener(config)
        _log.warning(
            "config version %d applied (%s by %s: %s)",
            event.version,
            ", ".join(event.changed_keys) or "every key",
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


def first_version(rt: Runtime) -> ConfigChanged:
    """Version 0 from this worker's settings, for a history that is still empty."""
    config = rt.settings.pipeline_config()
    values = sorted(to_values(config).items())
    return genesis(
        config, now=rt.clock(), event_id=stable_id("config genesis", values), changed_by="worker"
    )


async def follow(rt: Runtime, live: LiveConfig) -> None:
    """Apply the latest version, then every newer one as it is accepted."""
    kafka = rt.settings.kafka
    own = first_version(rt)
    chain = await ensure_history(kafka, own)
    latest = chain.latest
    assert latest is not None
    offset = chain.offsets[latest.version]
    walked = await read_back(kafka, offset, RECENT_ON_START)
    live.remember([r.event for r in reversed(walked[1:])])
    if latest.version == 0 and (keys := differing_keys(own, latest)):
        _log.warning("version 0 came from another worker; it differs in %s", ", ".join(keys))
    live.apply(rt, latest)
    await _follow_from(rt, live, offset + 1, latest)


async def _follow_from(rt: Runtime, live: LiveConfig, offset: int, latest: ConfigChanged) -> None:
    tp = TopicPartition(history_topic(rt.settings.kafka), 0)
    consumer = AIOKafkaConsumer(**rt.settings.kafka.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async for message in consumer:
            try:
                event = rt.codec.decode(message.value, ConfigChanged)
            except DecodeError as exc:
                _log.error("undecodable config record at offset %d: %s", message.offset, exc)
                continue
            if extends(latest, event):
                latest = event
                live.apply(rt, event)
            else:
                _log.info("config proposal for version %d lost its race", event.version)
    finally:
        await consumer.stop()
