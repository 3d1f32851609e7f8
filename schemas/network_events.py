"""Events of the guardian network and operations: diagnosis, proposals, experiments,
configuration, specialist health, alerts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Event, Millis


class FailureDiagnosed(Event):
    diagnosis_id: str
    window_start: Millis
    window_end: Millis
    specialist: str
    model: str
    prompt_version: str
    failure_class: str
    failures: int
    total: int
    rate: float
    example_request_ids: tuple[str, ...] = ()
    summary: str = ""


ProposalKind = Literal[
    "prompt",
    "temperature",
    "model",
    "max_tokens",
    "routing_weight",
    "threshold",
    "concurrency",
    "lane_guard",
    "max_rounds",
    "lesson",
]


class ImprovementProposed(Event):
    proposal_id: str
    diagnosis_id: str | None = None
    """The diagnosis, bottleneck or lesson it answers, if any."""
    kind: ProposalKind
    key: str
    current_value: str
    proposed_value: str
    rationale: str = ""
    expected_effect: str = ""
    proposed_by: str = "optimizer"


class ProposalReviewed(Event):
    proposal_id: str
    approved: bool
    reasons: tuple[str, ...] = ()
    reviewer: str = "safety-monitor"


class ExperimentConcluded(Event):
    experiment_id: str
    proposal_id: str
    control_n: int
    control_passes: int
    treatment_n: int
    treatment_passes: int
    control_mean_score: float
    treatment_mean_score: float
    effect_size: float
    p_value_pass_rate: float
    p_value_scores: float
    decision: Literal["promote", "rollback", "inconclusive"]
    reason: str = ""


class ConfigChanged(Event):
    version: int
    previous_version: int
    changed_by: str
    reason: str = ""
    changed_keys: tuple[str, ...] = ()
    values: dict[str, str] = Field(default_factory=dict)


class SpecialistHealth(Event):
    specialist: str
    deployment: str
    model: str = ""
    state: Literal["healthy", "degraded", "down"]
    breaker: Literal["closed", "open", "half_open"] = "closed"
    error_rate: float = 0.0
    window_s: float = 60.0
    calls: int = 0
    failures: int = 0
    last_success_at: Millis | None = None


class AlertRaised(Event):
    alert_id: str
    rule: str
    severity: Literal["info", "warning", "critical"]
    subject: str
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    message: str = ""
    started_at: Millis


class GuardianFlag(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    guardian: str
    passed: bool


class NetworkFactRecorded(Event):
    """A verdict or feedback on the network's single-partition aggregation topic, or a
    tick of its event time."""

    fact: Literal["verdict", "feedback", "tick"]
    source_event_id: str = ""
    recorded_at: Millis
    round: int = 0
    passed: bool = False
    score: float = 0.0
    threshold: float = 0.0
    failure_classes: tuple[str, ...] = ()
    scores: tuple[GuardianFlag, ...] = ()
    specialist: str = ""
    model: str = ""
    prompt_version: str = ""
    experiment_id: str | None = None
    proposal_id: str = ""
    min_samples: int = 0
    alpha: float = 0.0
    treatment_share: float = 0.0
    kind: str = ""
    rating: float | None = None
    signal: str | None = None
    latency_ms: float = 0.0
    tokens: int = 0
    subtask: str = ""
    task_class: str = ""
    answer_format: str = "text"
    reasked_for: tuple[str, ...] = ()


class AnomalyDetected(Event):
    """A specialist's metric out of its normal range (``firing``), or back in it
    (``resolved``); ``request_id`` holds the anomaly id."""

    anomaly_id: str
    metric: str
    subject: str
    kind: Literal["level", "drift"]
    state: Literal["firing", "resolved"]
    baseline: float
    observed: float
    score: float
    window_start: Millis
    window_end: Millis
    samples: int = 0


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LaneLoad(_Part):
    """One priority lane of a worker over a report's window."""

    lane: str
    lag: int = 0
    granted: int = 0
    wait_ms: float = 0.0


class DeploymentLoad(_Part):
    """One model deployment as a worker saw it over a report's window."""

    deployment: str
    calls: int = 0
    errors: int = 0
    mean_latency_ms: float = 0.0
    breaker: str = "closed"


class StageTime(_Part):
    """One stage's handling time over a report's window."""

    stage: str
    events: int = 0
    mean_ms: float = 0.0


class WorkerLoadReported(Event):
    """A worker's load over the last window: what the system optimizer decides on.
    ``request_id`` holds the worker's name."""

    worker: str
    window_start: Millis
    window_end: Millis
    slots: int
    slots_ceiling: int
    busy_share: float
    guard_every: int
    partitions: int
    lanes: tuple[LaneLoad, ...] = ()
    deployments: tuple[DeploymentLoad, ...] = ()
    stages: tuple[StageTime, ...] = ()
    lag: dict[str, int] = Field(default_factory=dict)
    responses: int = 0
    p95_latency_ms: float = 0.0
    mean_rounds: float = 0.0
    applied: dict[str, str] = Field(default_factory=dict)


class BottleneckIdentified(Event):
    """The system optimizer named what limits the cluster; ``request_id`` holds the
    bottleneck id."""

    bottleneck_id: str
    kind: Literal["model_slots", "workers", "slow_deployment", "starved_lane", "latency_budget"]
    subject: str
    metric: str
    observed: float
    limit: float
    window_start: Millis
    window_end: Millis
    workers: int
    recommended_workers: int
    summary: str = ""


class PerformanceCompared(Event):
    """A before/after test of a system parameter change: kept or rolled back.
    ``request_id`` holds the proposal id."""

    proposal_id: str
    bottleneck_id: str
    key: str
    previous_value: str
    tested_value: str
    metric: str
    before: float
    after: float
    cleared: bool
    decision: Literal["keep", "rollback"]
    reason: str = ""
    applied_at: Millis


class LessonLearned(Event):
    """A lesson of the knowledge synthesizer, one version per state; ``request_id``
    holds the lesson id."""

    lesson_id: str
    version: int
    state: Literal["learned", "kept", "retired"]
    scope: str
    failure_class: str
    text: str
    learned_from: tuple[str, ...] = ()
    pairs: int = 0
    experiment_id: str | None = None
    reason: str = ""
