"""Every topic of the system, defined once: name, record, key, partitions, retention.

Names follow ``guardian.<name>.v<major>``; nothing else in the code spells a
topic name. One record type per topic; tasks have one topic per priority lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.envelope import Event
from schemas.network_events import (
    AlertRaised,
    AnomalyDetected,
    BottleneckIdentified,
    ConfigChanged,
    ExperimentConcluded,
    FailureDiagnosed,
    ImprovementProposed,
    LessonLearned,
    NetworkFactRecorded,
    PerformanceCompared,
    ProposalReviewed,
    SpecialistHealth,
    WorkerLoadReported,
)
from schemas.request_events import (
    ContextProvided,
    DeadLettered,
    DeadlinePassed,
    FeedbackGiven,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
    SpecialistAnswered,
    TaskAssigned,
    VerdictIssued,
)

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
APP_ID = "guardian-cluster"
"""The workers' default application id: the consumer group, and the prefix of the
tables' changelog topics (``<namespace>.guardian-cluster`` under a namespace)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[Event]
    key: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = 7 * DAY_MS

    @property
    def scales_with_workers(self) -> bool:
        """Keyed per request or session: its partition count is the workers' (stages
        and their tables are co-partitioned on it), not the spec's."""
        return self.key in {"request_id", "session_id"}

    def config(self) -> dict[str, str]:
        """Topic-level configs for the admin client."""
        cfg: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.cleanup_policy == "delete":
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def _spec(short: str, record: type[Event], key: str = "request_id", **kw: object) -> TopicSpec:
    return TopicSpec(name=f"guardian.{short}.v1", record=record, key=key, **kw)  # type: ignore[arg-type]


REQUESTS = _spec("requests", RequestSubmitted, partitions=6)
TASKS = _spec("tasks", TaskAssigned, partitions=6)
"""The normal lane of tasks; with a single lane, every task."""
TASKS_HIGH = _spec("tasks_high", TaskAssigned, partitions=6)
TASKS_LOW = _spec("tasks_low", TaskAssigned, partitions=6)
TASK_LANES: tuple[TopicSpec, ...] = (TASKS_HIGH, TASKS, TASKS_LOW)
"""The task topics, most urgent first: one topic per priority lane, so the backlog of
each lane waits in Kafka and an urgent task never queues behind a lower lane's."""
ANSWERS = _spec("answers", SpecialistAnswered, partitions=6)
VERDICTS = _spec("verdicts", VerdictIssued, partitions=6)
RESPONSES = _spec("responses", ResponseDelivered, partitions=6)
DEAD_LETTERS = _spec("dead_letters", DeadLettered, partitions=1, retention_ms=30 * DAY_MS)
DEADLINES = _spec("deadlines", DeadlinePassed, partitions=6, retention_ms=DAY_MS)
FEEDBACK = _spec("feedback", FeedbackGiven, partitions=6, retention_ms=30 * DAY_MS)
DIAGNOSES = _spec("diagnoses", FailureDiagnosed, key="diagnosis_id", partitions=1)
PROPOSALS = _spec("proposals", ImprovementProposed, key="proposal_id", partitions=1)
REVIEWS = _spec("reviews", ProposalReviewed, key="proposal_id", partitions=1)
EXPERIMENTS = _spec("experiments", ExperimentConcluded, key="experiment_id", partitions=1)
CONFIG = _spec("config", ConfigChanged, key="scope", partitions=1, cleanup_policy="compact")
"""The current view: compacted to the latest version, which names its place in the history."""
CONFIG_HISTORY = _spec(
    "config_history", ConfigChanged, key="version", partitions=1, retention_ms=-1
)
"""Every config version ever proposed, kept forever (never compacted: of two proposals
for one version the first wins, and compaction would keep the last)."""
CONFIG_TOPICS: tuple[TopicSpec, ...] = (CONFIG_HISTORY, CONFIG)
"""The config topics, provisioned by whoever touches the configuration first. The
history is not in ``ALL``: it carries the same record as the current view, and ``ALL``
holds one topic per record."""
SPECIALIST_HEALTH = _spec(
    "specialist_health", SpecialistHealth, key="deployment", partitions=1, cleanup_policy="compact"
)
SESSIONS = _spec("sessions", SessionTurn, key="session_id", partitions=6)
"""The conversation log: every session's turns in one partition, in order."""
CONTEXTS = _spec("contexts", ContextProvided, partitions=6, retention_ms=DAY_MS)
ALERTS = _spec("alerts", AlertRaised, key="alert_id", partitions=1, retention_ms=30 * DAY_MS)
ANOMALIES = _spec(
    "anomalies", AnomalyDetected, key="anomaly_id", partitions=1, retention_ms=30 * DAY_MS
)
"""The anomaly detector's findings: what each alert of rule ``anomaly`` was raised on."""
WORKER_LOAD = _spec(
    "worker_load", WorkerLoadReported, key="worker", partitions=1, retention_ms=DAY_MS
)
"""Every worker's load reports in one partition: one system optimizer folds them all in
one order, so the whole cluster reaches one decision."""
BOTTLENECKS = _spec(
    "bottlenecks", BottleneckIdentified, key="bottleneck_id", partitions=1, retention_ms=30 * DAY_MS
)
PERFORMANCE = _spec(
    "performance", PerformanceCompared, key="proposal_id", partitions=1, retention_ms=30 * DAY_MS
)
"""The before/after tests of system parameter changes: each change kept or rolled back."""
LESSONS = _spec("lessons", LessonLearned, key="lesson_id", partitions=1, retention_ms=-1)
"""Every version of every lesson, kept forever: what the system learned and whether it
kept it."""
NETWORK_FACTS = _spec(
    "network_facts", NetworkFactRecorded, key="scope", partitions=1, retention_ms=DAY_MS
)
"""The facts the guardian network decides on (verdicts, feedback, ticks of event time),
from every partition, in one partition under one constant key: one aggregator reads
them all in one order, so the whole cluster reaches one decision."""
NETWORK_SCOPE = "network"
"""The key of every record on ``NETWORK_FACTS``."""

ALL: tuple[TopicSpec, ...] = (
    REQUESTS,
    *TASK_LANES,
    ANSWERS,
    VERDICTS,
    RESPONSES,
    DEAD_LETTERS,
    DEADLINES,
    FEEDBACK,
    DIAGNOSES,
    PROPOSALS,
    REVIEWS,
    EXPERIMENTS,
    CONFIG,
    SPECIALIST_HEALTH,
    ALERTS,
    ANOMALIES,
    WORKER_LOAD,
    BOTTLENECKS,
    PERFORMANCE,
    LESSONS,
    SESSIONS,
    CONTEXTS,
    NETWORK_FACTS,
)
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL}
BY_RECORD: dict[str, TopicSpec] = {
    t.record.record_name: t for t in ALL if t not in (TASKS_HIGH, TASKS_LOW)
}
"""The topic each record goes to; a task's lane topic is picked by its priority instead."""


def qualified(spec: TopicSpec, namespace: str = "") -> str:
    """The topic's name under an optional namespace prefix (isolated test runs, tenants
    sharing a cluster): ``<namespace>.guardian.requests.v1``."""
    return f"{namespace}.{spec.name}" if namespace else spec.name


@dataclass(frozen=True)
class TableSpec:
    """A changelog-backed table of the workers. Its changelog is compacted, and rolled
    and cleaned often enough that the tombstones of expired entries (and the values they
    replace) leave the log within hours instead of waiting for a week-old segment."""

    name: str
    segment_ms: int = HOUR_MS
    """Only closed segments are compacted: roll hourly."""
    max_compaction_lag_ms: int = 2 * HOUR_MS
    """A deleted or replaced value is compacted away at the latest this long after."""
    min_cleanable_dirty_ratio: float = 0.1
    delete_retention_ms: int = HOUR_MS
    """How long a tombstone itself stays after compaction: a worker recovering the
    table reads the changelog within minutes, not hours."""

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": "compact",
            "segment.ms": str(self.segment_ms),
            "max.compaction.lag.ms": str(self.max_compaction_lag_ms),
            "min.cleanable.dirty.ratio": str(self.min_cleanable_dirty_ratio),
            "delete.retention.ms": str(self.delete_retention_ms),
        }

    def changelog(self, app_id: str) -> str:
        """Faust's name for the changelog topic of this table under ``app_id``."""
        return f"{app_id}-{self.name}-changelog"


REFINEMENT_TABLE = TableSpec("refinement")
"""request_id -> the request's state, until a while after it finished."""
DONE_TABLE = TableSpec("refinement-done")
"""request_id -> a finished request's marker: its payload digest and final response."""
SESSIONS_TABLE = TableSpec("sessions")
"""session_id -> the session's recent turns, until it has been idle a while."""
NETWORK_TABLE = TableSpec("network")
"""The network aggregator's state (open diagnosis windows, experiment tallies, meta-guardian
bookkeeping) and the facts it keeps (by source event id), until their retention ends."""
CAPACITY_TABLE = TableSpec("capacity")
"""The system optimizer's state: the workers' latest reports, open bottlenecks, the test."""
TABLES: tuple[TableSpec, ...] = (
    REFINEMENT_TABLE,
    DONE_TABLE,
    SESSIONS_TABLE,
    NETWORK_TABLE,
    CAPACITY_TABLE,
)


def app_id_for(namespace: str = "", app_id: str = APP_ID) -> str:
    """The application id of workers under ``namespace``."""
    return f"{namespace}.{app_id}" if namespace else app_id
