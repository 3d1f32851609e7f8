"""What every stage shares: settings, the codec, the live config, the ports, the
faust app with its topics and the refinement table, and one way to emit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust

from agents.config import PipelineConfig
from agents.knowledge import KnowledgeStore
from agents.ports import AnswerCache, Embedder, PiiDetector
from connectors.resilient import ResilientLLM
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.request_events import ResponseDelivered, TaskAssigned
from schemas.topics import TopicSpec, qualified
from streams.lanes import lane_topic
from streams.metrics import Metrics
from streams.settings import AppSettings

_PENDING: ContextVar[list[Awaitable[Any]] | None] = ContextVar("pending_sends", default=None)
"""The broker acknowledgements the record being handled (in this task) still waits for."""


@asynccontextmanager
async def sends_of_record() -> AsyncIterator[None]:
    """Collect the sends made inside the block and wait for the broker to acknowledge
    them all on the way out; a send that failed raises here."""
    pending: list[Awaitable[Any]] = []
    token = _PENDING.set(pending)
    try:
        yield
    finally:
        _PENDING.reset(token)
        # Awaited on the way out of a failure too: no acknowledgement goes unobserved.
        outcomes = await asyncio.gather(*pending, return_exceptions=True) if pending else []
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise failures[0]


CONFIGS_KEPT = 256


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Ports:
    llm: ResilientLLM
    """The deployments of the specialist, in fallback order, with retries and breakers."""
    embedder: Embedder
    pii: PiiDetector | None
    cache: AnswerCache | None = None
    knowledge: KnowledgeStore = field(default_factory=KnowledgeStore)
    """What the retrieval specialist searches (empty: it answers without passages)."""

    @property
    def deployment(self) -> str:
        """The primary deployment: where tasks are assigned."""
        return self.llm.deployments[0]


@dataclass
class Runtime:
    settings: AppSettings
    app: faust.App
    codec: Codec
    ports: Ports
    config: PipelineConfig
    table: Any  # faust.Table[bytes, bytes]: request_id -> RequestState JSON
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utc_now
    open_deadlines: dict[str, datetime] = field(default_factory=dict)
    open_tasks: dict[str, datetime] = field(default_factory=dict)
    configs: dict[int, PipelineConfig] = field(default_factory=dict)
    """Configurations this worker has run under, by version (the last ``CONFIGS_KEPT``)."""
    _topics: dict[str, Any] = field(default_factory=dict)
    _names: dict[str, str] = field(default_factory=dict)

    def live_config(self) -> PipelineConfig:
        """The configuration new requests are admitted under (remembered by version)."""
        config = self.config
        if config.version not in self.configs:
            self.remember(config)
        return config

    def remember(self, config: PipelineConfig) -> None:
        self.configs[config.version] = config
        while len(self.configs) > CONFIGS_KEPT:
            del self.configs[min(self.configs)]

    def config_at(self, version: int) -> PipelineConfig:
        """The configuration of ``version``: a request is decided from admission to its
        final response under the version it was admitted with. A version this worker
        never saw (older than its follower's start) falls back to the live one."""
        found = self.configs.get(version)
        return found if found is not None else self.live_config()

    def topic(self, spec: TopicSpec) -> Any:
        """The faust topic of ``spec`` (raw bytes: the codec does all the encoding)."""
        name = qualified(spec, self.settings.kafka.topic_namespace)
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                internal=False,
            )
        return self._topics[name]

    def sources(self, *specs: TopicSpec) -> Any:
        """One faust topic over several (raw bytes), for a stage that takes more than
        one record: the stage decodes each record and dispatches on its type."""
        return self.app.topic(
            *(qualified(spec, self.settings.kafka.topic_namespace) for spec in specs),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    async def emit(self, event: Event, *, headers: dict[str, bytes] | None = None) -> None:
        """Send ``event`` to its topic, keyed by its request; a task goes to the lane topic
        of its priority (all tasks of a request share it, so their order holds).

        Inside the stage loop the broker's acknowledgement is awaited once the record's
        handler returns (``sends_of_record``), so a record is acked, and its offset
        committed, only after all it caused is written; elsewhere it is awaited here."""
        spec = topics.BY_RECORD[event.record_name]
        if isinstance(event, TaskAssigned):
            spec = lane_topic(event.priority, self.settings.worker.priority_lanes)
        await self._send(
            self._name(spec), event.request_id.encode(), self.codec.encode(event), None, headers
        )

    async def forward(self, spec: TopicSpec, key: bytes, value: bytes, partition: int) -> None:
        """Send a record as it is to one partition of ``spec``, acknowledged like
        ``emit``'s sends."""
        await self._send(self._name(spec), key, value, partition, None)

    async def _send(
        self,
        name: str,
        key: bytes,
        value: bytes,
        partition: int | None,
        headers: dict[str, bytes] | None,
    ) -> None:
        acked = await self.app.producer.send(name, key, value, partition, None, headers)
        pending = _PENDING.get()
        if pending is None:
            await acked
        else:
            pending.append(acked)

    def _name(self, spec: TopicSpec) -> str:
        name = self._names.get(spec.name)
        if name is None:
            name = self._names[spec.name] = qualified(spec, self.settings.kafka.topic_namespace)
        return name

    def count_response(self, response: ResponseDelivered) -> None:
        """Metrics of a final response, counted once when it is decided."""
        self.metrics.responses.labels(response.status).inc()
        if response.status != "rejected":
            self.metrics.rounds.observe(response.rounds)
        self.metrics.end_to_end.observe(response.latency_ms / 1000)

    @property
    def partitions(self) -> int:
        return self.settings.kafka.partitions or self.settings.worker.partitions
