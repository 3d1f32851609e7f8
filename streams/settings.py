"""Every setting of a worker, one class per concern, composed into ``AppSettings``.

Loaded once at start-up (``AppSettings.load()``) and passed down; nothing else
reads the environment. Tests build settings directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.config import (
    GuardianPolicy,
    IntakePolicy,
    PipelineConfig,
    RefinePolicy,
    RoutingPolicy,
    SpecialistProfile,
)
from connectors.alert_sinks import AlertSettings
from connectors.broker import BrokerSettings
from connectors.cache_store import CacheSettings
from connectors.embeddings import EmbeddingSettings
from connectors.kafka import KafkaSettings
from connectors.llm_embedded import EmbeddedModelSettings
from connectors.pii import PiiSettings
from connectors.schema_registry import RegistrySettings
from streams.dead_letters import DeadLetterSettings
from streams.gateway.settings import GatewaySettings


class WorkerSettings(BaseSettings):
    """How a worker runs (``GUARDIAN_WORKER_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_WORKER_", frozen=True)

    app_id: str = "guardian-cluster"
    partitions: int = Field(default=6, ge=1)
    specialist_concurrency: int = Field(default=8, ge=1)
    guardian_concurrency: int = Field(default=2, ge=1)
    guardian_inline: bool = True
    """Score each answer in the specialist stage that produced it (answer and verdict are
    both emitted); false runs the guardians as their own stage on the answers topic."""
    web_port: int = Field(default=6066, ge=0)
    web_enabled: bool = False
    data_dir: Path = Path(".run/worker")
    session_timeout_s: float = Field(default=10.0, gt=0)
    """How long the group waits for a silent worker before its partitions move: a dead
    worker's requests pause this long. Heartbeats share the event loop with the stages."""
    heartbeat_s: float = Field(default=2.0, gt=0)
    instance_id: str | None = None
    """Static group membership (``group.instance.id``): a worker restarted under the same id
    within the session timeout gets its partitions back without a rebalance. Unset (the
    default): dynamic membership. Each worker needs its own id; a second worker with the
    same id fences the first."""
    consumer: Literal["same-loop", "threaded"] = "same-loop"
    """``same-loop``: the Kafka consumer runs on the worker's event loop (streams.transport);
    ``threaded``: faust's stock consumer thread, for comparison."""
    fetch_wait_ms: int = Field(default=20, ge=0, le=1500)
    """How long a fetch waits at the broker for new records: a just-drained partition's
    next records wait at most this long. Lower costs broker CPU on idle topics."""
    commit_interval_s: float = Field(default=1.0, gt=0)
    """Offsets are committed on this interval (after the producer has flushed)."""
    deadline_scan_s: float = Field(default=1.0, gt=0)
    stall_s: float = Field(default=60.0, gt=0)
    """Longest wait for a task's verdict before it is assigned again (same event); the
    wait is ``stall_share`` of the time its request had left, at least ``stall_floor_s``,
    never past the request's deadline."""
    stall_share: float = Field(default=0.25, gt=0, le=1)
    """Share of the time a request has left that its task may wait for a verdict."""
    stall_floor_s: float = Field(default=5.0, gt=0)
    """Shortest wait for a verdict before a task is assigned again."""
    model_timeout_s: float = Field(default=25.0, gt=0)
    """Cap on one task's model work, retries and fallbacks included: short enough that a
    second try after a re-send still fits inside the default deadline."""
    answer_retain_s: float = Field(default=1800.0, gt=0)
    """A request's recorded specialist answers stay this long after the last one: a task
    redelivered or re-sent within it re-emits its answer without a model call."""
    answer_max: int = Field(default=20_000, ge=1)
    """Requests whose answers one worker keeps at most; beyond that the oldest go first."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Prometheus endpoint; 0 turns it off."""
    metrics_host: str = "127.0.0.1"
    lag_interval_s: float = Field(default=5.0, gt=0)
    producer_linger_ms: float = Field(default=0.0, ge=0)
    """How long the producer waits to batch records: throughput for latency."""
    producer_timeout_s: float = Field(default=1200.0, gt=0)
    """How long a send may wait for the broker's acknowledgement (the producer retries
    inside it). When it runs out, the stage handles the record again with backoff (a
    transient error, never a dead letter). Table changelog writes share it, and faust
    stops a worker whose changelog write fails, so keep it above the broker outages a
    worker should ride out (faust's default, 20 minutes)."""
    priority_lanes: int = Field(default=3, ge=1, le=3)
    """Task lanes by request priority: 3 (high 7-9, normal 4-6, low 0-3), 2 (normal 5-9,
    low 0-4) or 1 (every task in the normal lane). Workers serve every lane topic."""
    priority_guard_every: int = Field(default=8, ge=2)
    """Starvation guard: of this many model-call slots in a row given to a more urgent lane
    while a lower lane waits, one goes to the lower lane."""


class ModelSettings(BaseSettings):
    """Which model backend answers tasks (``GUARDIAN_MODEL_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_MODEL_", frozen=True)

    backend: Literal["embedded", "scripted", "openai"] = "embedded"
    script_path: Path | None = None
    """JSON script for the scripted backend (tests, benchmarks)."""
    deployments: str = ""
    """Fallback chain, in order: ``name=kind[:script]`` items separated by commas, kind one
    of embedded, scripted, openai (e.g. ``primary=openai,local=embedded``). Empty: one
    deployment named after ``backend``."""
    max_attempts: int = Field(default=4, ge=1)
    retry_base_delay_s: float = Field(default=0.25, ge=0.0)
    retry_max_delay_s: float = Field(default=8.0, ge=0.0)
    retry_budget_s: float = Field(default=30.0, gt=0.0)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=15.0, gt=0.0)
    breaker_window_s: float = Field(default=30.0, gt=0.0)
    health_interval_s: float = Field(default=10.0, gt=0.0)

    def chain(self) -> list[tuple[str, str, str | None]]:
        """(name, kind, script path) of every deployment, in fallback order."""
        if not self.deployments.strip():
            path = str(self.script_path) if self.script_path else None
            return [(self.backend, self.backend, path)]
        chain = []
        for item in self.deployments.split(","):
            name, _, spec = item.strip().partition("=")
            kind, _, arg = spec.partition(":")
            if kind not in {"embedded", "scripted", "openai"} or not name:
                raise ValueError(f"bad deployment {item!r}: want name=embedded|scripted|openai")
            chain.append((name, kind, arg or None))
        return chain


class GuardianSettings(BaseSettings):
    """The guardians' thresholds (``GUARDIAN_GUARD_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_GUARD_", frozen=True)

    pass_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    min_alignment: float = 0.3
    pii_check: bool = True
    constraints: bool = True
    """Check the verifiable constraints a request states."""
    embedder: Literal["minilm", "hashing"] = "minilm"


class RefineSettings(BaseSettings):
    """The refinement loop (``GUARDIAN_REFINE_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_REFINE_", frozen=True)

    max_rounds: int = Field(default=3, ge=1)
    critique: bool = True
    """Re-ask with the critique; off, later rounds resample the same question."""
    show_previous: bool = False
    """A re-ask shows the previous attempt; off, a fresh sample with the critique as a note."""
    reask_on: Literal["any", "exact"] = "any"
    """Re-ask on any failure, or only on an exact one (constraint, format, safety...)."""
    default_timeout_s: float = Field(default=120.0, gt=0)
    max_prompt_chars: int = Field(default=8000, ge=1)
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    retain_s: float = Field(default=600.0, ge=0)
    """A finished request's full state stays in the refinement table this long (a late
    verdict, a resend or a session's answer turn still finds it), then is deleted."""
    done_retain_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    """A finished request's done marker (payload digest and final response) stays this
    long: a resend is answered with the same response and no model call. The default
    matches the requests topic's retention."""
    max_done: int = Field(default=100_000, ge=1)
    """Done markers one worker holds at most; beyond that the oldest are deleted first."""


class RoutingSettings(BaseSettings):
    """Traffic shares of the deployments (``GUARDIAN_ROUTING_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_ROUTING_", frozen=True)

    weights: dict[str, float] = Field(default_factory=dict)
    """JSON, e.g. ``GUARDIAN_ROUTING_WEIGHTS='{"a": 0.7, "b": 0.3}'``; empty: the chain's
    first deployment serves and the rest are fallbacks."""
    decompose: bool = True
    """``GUARDIAN_ROUTING_DECOMPOSE=false``: never split a request into subtasks."""


class SessionSettings(BaseSettings):
    """The context maintainer (``GUARDIAN_SESSION_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_SESSION_", frozen=True)

    max_context_tokens: int = Field(default=512, ge=0)
    """Budget of the earlier turns added to a session request's prompts (words, roughly
    tokens); older turns are dropped first."""
    idle_s: float = Field(default=24 * 3600.0, gt=0)
    """A session with no prompt or answer for this long leaves the sessions table (a
    delete); a later request of it starts without earlier turns."""


class NetworkSettings(BaseSettings):
    """The guardian network's stages (``GUARDIAN_NETWORK_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_NETWORK_", frozen=True)

    apply_changes: bool = True
    """False freezes the configuration: diagnoses, proposals and reviews go on, but no
    experiment starts and no system parameter is applied (a change freeze; an
    evaluation compares its arms on one configuration)."""
    diagnosis_window_s: float = Field(default=300.0, gt=0)
    min_failures: int = Field(default=5, ge=1)
    min_failure_rate: float = Field(default=0.2, gt=0.0, le=1.0)
    experiment_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    experiment_min_samples: int = Field(default=200, ge=2)
    experiment_alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    meta_interval_s: float = Field(default=60.0, gt=0)
    meta_min_rated: int = Field(default=50, ge=1)
    drift_window_s: float = Field(default=3600.0, gt=0)
    """Quality of the last window is compared with the window before it."""
    drift_min_samples: int = Field(default=30, ge=1)
    retrain_every_s: float = Field(default=0.0, ge=0)
    """A scheduled retraining recommendation every this many seconds (0: none)."""
    anomaly_window_s: float = Field(default=300.0, gt=0)
    """The anomaly detector's windows: one point of each series per window."""
    anomaly_min_samples: int = Field(default=20, ge=1)
    """A specialist's window with fewer verdicts adds no point to its series."""
    anomaly_history: int = Field(default=36, ge=4)
    """Windows the level baseline is taken from (3 hours of 5-minute windows)."""
    anomaly_min_history: int = Field(default=12, ge=3)
    anomaly_season: int = Field(default=0, ge=0)
    """Windows per cycle of a seasonal baseline (288: a day of 5-minute windows); 0: none."""
    anomaly_z: float = Field(default=4.0, gt=0)
    anomaly_persistence: int = Field(default=3, ge=1)
    lesson_min_pairs: int = Field(default=5, ge=1)
    """Failed-then-passed answers of one scope and failure class that make a lesson."""
    load_report_s: float = Field(default=10.0, gt=0)
    """Every worker reports its load to the system optimizer this often."""
    optimizer_sustain: int = Field(default=3, ge=1)
    """Reports in a row a condition must hold to be named a bottleneck."""
    optimizer_busy_share: float = Field(default=0.9, gt=0.0, le=1.0)
    optimizer_latency_budget_ms: float = Field(default=30_000.0, gt=0)
    optimizer_settle: int = Field(default=1, ge=0)
    """Reports skipped after a change reached every worker, before measuring."""
    optimizer_measure: int = Field(default=3, ge=1)
    """Reports a before/after test measures the change over."""
    optimizer_min_gain: float = Field(default=0.1, ge=0.0)
    optimizer_cooldown_s: float = Field(default=60.0, ge=0)
    optimizer_apply_timeout_s: float = Field(default=300.0, gt=0)


class KnowledgeSettings(BaseSettings):
    """The retrieval specialist's knowledge store (``GUARDIAN_KNOWLEDGE_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_KNOWLEDGE_", frozen=True)

    dir: Path | None = None
    """Folder of ``*.md``/``*.txt`` files, read at start-up; unset: an empty store."""
    top_k: int = Field(default=3, ge=1, le=20)
    """Passages given to the model per retrieval task."""
    min_score: float = Field(default=0.2, ge=-1.0, le=1.0)
    """Cosine similarity below which a passage is not given."""
    max_passage_chars: int = Field(default=800, ge=100, le=4000)


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    embedded: EmbeddedModelSettings = Field(default_factory=EmbeddedModelSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    guard: GuardianSettings = Field(default_factory=GuardianSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    refine: RefineSettings = Field(default_factory=RefineSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    @classmethod
    def load(cls) -> AppSettings:
        return cls()

    def with_namespace(self, namespace: str) -> AppSettings:
        """The same settings under another topic namespace."""
        kafka = self.kafka.model_copy(update={"topic_namespace": namespace})
        return self.model_copy(update={"kafka": kafka})

    def pipeline_config(self) -> PipelineConfig:
        """The first live configuration, before any ``ConfigChanged`` event."""
        return PipelineConfig(
            version=0,
            intake=IntakePolicy(max_prompt_chars=self.refine.max_prompt_chars),
            guardian=GuardianPolicy(
                pass_threshold=self.guard.pass_threshold,
                min_alignment=self.guard.min_alignment,
                pii_check=self.guard.pii_check,
                constraints=self.guard.constraints,
            ),
            refine=RefinePolicy(
                max_rounds=self.refine.max_rounds,
                critique=self.refine.critique,
                show_previous=self.refine.show_previous,
                reask_on=self.refine.reask_on,
                default_timeout_s=self.refine.default_timeout_s,
            ),
            specialist=SpecialistProfile(
                max_tokens=self.refine.max_tokens, temperature=self.refine.temperature
            ),
            routing=RoutingPolicy(weights=self.routing.weights, decompose=self.routing.decompose),
        )
