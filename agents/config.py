"""The live configuration the decisions are made under: thresholds, limits, prompts.

Plain frozen models (no environment): the streams layer builds the first
version from settings and later versions from ``ConfigChanged`` events.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntakePolicy(_Frozen):
    max_prompt_chars: int = Field(default=8000, ge=1)
    min_priority: int = 0
    max_priority: int = 9
    max_rounds_cap: int = Field(default=5, ge=1)
    max_tokens_cap: int = Field(default=4096, ge=1)
    """The most tokens per model call a request may ask for."""
    max_constraints: int = Field(default=32, ge=0)
    tenant_pattern: str = r"^[a-z0-9][a-z0-9_-]{0,63}$"
    reject_injection: bool = True


class GuardianPolicy(_Frozen):
    pass_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    min_alignment: float = Field(default=0.3, ge=-1.0, le=1.0)
    """Cosine similarity between request and answer below which the answer is off-topic."""
    full_alignment: float = Field(default=0.6, ge=-1.0, le=1.0)
    """Cosine similarity that scores 1.0."""
    min_words: int = Field(default=3, ge=0)
    min_new_words: int = Field(default=1, ge=0)
    """Distinct content words an answer must add to the question; fewer is an echo."""
    min_new_share: float = Field(default=0.25, ge=0.0, le=1.0)
    """Share of an answer's content words that must be new to the question."""
    echo_alignment: float = Field(default=0.95, ge=-1.0, le=1.0)
    """Cosine similarity from which an answer that adds under half new words is an echo."""
    pii_check: bool = True
    leak_min_chars: int = Field(default=40, ge=8)
    constraints: bool = True
    """Check the verifiable constraints a request states (word counts, JSON, phrases...)."""
    weight_alignment: float = 0.5
    weight_completeness: float = 0.25
    weight_format: float = 0.1
    weight_safety: float = 0.15
    version: str = "v1"


class RefinePolicy(_Frozen):
    max_rounds: int = Field(default=3, ge=1)
    default_timeout_s: float = Field(default=120.0, gt=0)
    temperature_step: float = Field(default=0.3, ge=0.0)
    max_temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    critique: bool = True
    """Re-ask with the guardians' critique and the previous attempt; off, a later round
    asks the same question again (resampling, still keeping the best attempt)."""
    reask_on: Literal["any", "exact"] = "any"
    """Which failures earn another round: ``any``, or only ``exact`` ones (a constraint,
    the JSON format, safety, an empty answer or a model error), so a miss by the soft
    signals (alignment, completeness, the weighted score) is reported but not re-asked."""
    show_previous: bool = False
    """A re-ask shows the model its previous attempt before the critique; off (the
    default, chosen on the project task set: +20.2 points over single shot against +6.7
    with the attempt shown), it asks the question afresh with the critique as a note. A
    JSON format failure's re-ask always shows the attempt it converts."""


class SpecialistProfile(_Frozen):
    name: str = "general"
    system_prompt: str = (
        "You are a careful assistant. Answer the user's question directly, accurately "
        "and completely, in plain language."
    )
    prompt_version: str = "v1"
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1)
    lessons: dict[str, list[str]] = Field(default_factory=dict)
    """Lessons by task scope (an answer format, or a task class; ``agents.lessons``),
    added to the system prompt of every specialist's tasks in that scope."""


class RoutingPolicy(_Frozen):
    """Traffic shares of the model deployments (empty: the first of the chain serves)."""

    weights: dict[str, float] = Field(default_factory=dict)
    decompose: bool = True
    """Split moderate and complex requests into subtasks for several specialists
    (off: every request is one ``main`` subtask for the general specialist)."""


class CapacityPolicy(_Frozen):
    """Worker capacity as live configuration: set, a key overrides every worker's own
    setting of the same name, applied without a restart; null leaves each worker's."""

    specialist_concurrency: int | None = Field(default=None, ge=1, le=1024)
    """Model-call slots per worker (``GUARDIAN_WORKER_SPECIALIST_CONCURRENCY``)."""
    priority_guard_every: int | None = Field(default=None, ge=2, le=1000)
    """The lanes' starvation guard (``GUARDIAN_WORKER_PRIORITY_GUARD_EVERY``)."""


class ExperimentPolicy(_Frozen):
    """The A/B experiment running on live traffic, if any (``id`` empty: none)."""

    id: str = ""
    proposal_id: str = ""
    key: str = ""
    """Config key the treatment arm changes."""
    value: str = ""
    """JSON of the treatment's value for ``key``."""
    share: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_samples: int = Field(default=200, ge=2)
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)


class PipelineConfig(_Frozen):
    version: int = 0
    intake: IntakePolicy = IntakePolicy()
    guardian: GuardianPolicy = GuardianPolicy()
    refine: RefinePolicy = RefinePolicy()
    specialist: SpecialistProfile = SpecialistProfile()
    experiment: ExperimentPolicy = ExperimentPolicy()
    routing: RoutingPolicy = RoutingPolicy()
    capacity: CapacityPolicy = CapacityPolicy()
