"""When to call a model again after a failure: bounded, exponential, jittered, Retry-After aware.

Pure decisions: the caller passes the attempt number, the time already spent
and a uniform random number, and gets back how long to wait, or ``None``.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.errors import ModelError, ModelRateLimited, ModelRejected

StopReason = Literal["not_retriable", "attempts_exhausted", "budget_exhausted", "circuit_open"]
"""Why a failure is final; a closed set, usable as a log field or metric label.
``circuit_open`` is the caller's: the deployment's breaker opened, so do not wait on it."""

_MAX_EXPONENT: Final = 62
"""Doublings past this cannot matter (every delay is capped) and would overflow a float."""


class RetryPolicy(BaseModel):
    """Bounds on retrying one deployment: attempts, per-wait delay, total time spent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=4, ge=1)
    """Calls per deployment, the first one included."""
    base_delay_s: float = Field(default=0.25, ge=0.0)
    """Wait after the first failure; doubled after each further one."""
    max_delay_s: float = Field(default=8.0, ge=0.0)
    """Cap on one backoff wait (a server's Retry-After may ask for longer)."""
    max_total_s: float = Field(default=30.0, ge=0.0)
    """No wait may end later than this many seconds after the first call started."""
    jitter: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fraction of each backoff wait that is randomised away, to spread out retry storms."""


class RetryDecision(BaseModel):
    """Wait ``delay_s`` and call again, or stop for ``stop``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay_s: float | None
    stop: StopReason | None = None


def backoff_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """The jittered exponential wait after failed attempt number ``attempt`` (1-based).

    ``base * 2**(attempt-1)``, capped at ``max_delay_s``, then reduced by up to
    ``jitter`` of itself: the result lies in ``((1 - jitter) * d, d]``.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must lie in [0, 1), got {rand}")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    delay = min(policy.max_delay_s, policy.base_delay_s * 2.0**exponent)
    return delay * (1.0 - policy.jitter * rand)


def decide(
    policy: RetryPolicy, error: ModelError, attempt: int, elapsed_s: float, rand: float
) -> RetryDecision:
    """Whether and when to retry after ``error`` ended attempt number ``attempt``.

    ``elapsed_s`` is the time since the first attempt started. A rate limit with
    a Retry-After is never retried sooner than it asks.
    """
    delay = backoff_s(policy, attempt, rand)
    if not error.retriable:
        return RetryDecision(delay_s=None, stop="not_retriable")
    if attempt >= policy.max_attempts:
        return RetryDecision(delay_s=None, stop="attempts_exhausted")
    if isinstance(error, ModelRateLimited) and error.retry_after_s is not None:
        delay = max(delay, error.retry_after_s)
    if elapsed_s + delay > policy.max_total_s:
        return RetryDecision(delay_s=None, stop="budget_exhausted")
    return RetryDecision(delay_s=delay)


def next_delay(
    policy: RetryPolicy, error: ModelError, attempt: int, elapsed_s: float, rand: float
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` to stop (see ``decide``)."""
    return decide(policy, error, attempt, elapsed_s, rand).delay_s


def fail_over(error: ModelError) -> bool:
    """Whether another deployment may succeed where this one failed with ``error``.

    A rejected request (4xx) is the request's fault, not the deployment's: every
    deployment would reject it too. Anything else (even a non-retriable failure
    such as a model that cannot load) is worth one try elsewhere.
    """
    return not isinstance(error, ModelRejected)


def is_deployment_fault(error: ModelError) -> bool:
    """Whether ``error`` counts against the deployment's health (its circuit breaker)."""
    return fail_over(error)
