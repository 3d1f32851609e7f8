"""The retry policy: backoff, jitter, Retry-After, attempt cap, total budget, what stops it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelNotAllowed,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.retry import (
    RetryPolicy,
    backoff_s,
    decide,
    fail_over,
    is_deployment_fault,
    next_delay,
)

DEFAULT = RetryPolicy()
NO_JITTER = RetryPolicy(jitter=0.0)
LONG = RetryPolicy(max_attempts=50, max_total_s=10_000.0, jitter=0.0)


def test_defaults() -> None:
    assert DEFAULT.model_dump() == {
        "max_attempts": 4,
        "base_delay_s": 0.25,
        "max_delay_s": 8.0,
        "max_total_s": 30.0,
        "jitter": 0.5,
    }


@pytest.mark.parametrize(
    ("policy", "attempt", "rand", "expected"),
    [
        (NO_JITTER, 1, 0.0, 0.25),
        (NO_JITTER, 2, 0.0, 0.5),
        (NO_JITTER, 3, 0.0, 1.0),
        (LONG, 6, 0.0, 8.0),  # 0.25 * 32 capped at max_delay_s
        (LONG, 50, 0.0, 8.0),
        (DEFAULT, 1, 0.0, 0.25),  # rand 0: no reduction
        (DEFAULT, 1, 0.5, 0.1875),  # 0.25 * (1 - 0.5 * 0.5)
        (DEFAULT, 3, 0.5, 0.75),
        (RetryPolicy(jitter=1.0), 2, 0.75, 0.125),
        (RetryPolicy(base_delay_s=0.0), 3, 0.3, 0.0),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(
    policy: RetryPolicy, attempt: int, rand: float, expected: float
) -> None:
    assert backoff_s(policy, attempt, rand) == pytest.approx(expected)


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert backoff_s(LONG, 10_000, 0.0) == 8.0


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.0), (1, -0.1), (1, 1.0)])
def test_backoff_rejects_out_of_range_inputs(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError, match=r"must lie|start at 1"):
        backoff_s(DEFAULT, attempt, rand)


@pytest.mark.parametrize(
    ("error", "attempt", "elapsed_s", "expected"),
    [
        (ModelUnavailable("503"), 1, 0.0, 0.25),
        (ModelTimeout("read"), 2, 1.0, 0.5),
        (ModelBadResponse("not json"), 3, 1.0, 1.0),
        (ModelRateLimited("429"), 1, 0.0, 0.25),  # no Retry-After: plain backoff
        (ModelRateLimited("429", retry_after_s=3.0), 1, 0.0, 3.0),  # never sooner
        (ModelRateLimited("429", retry_after_s=0.1), 2, 0.0, 0.5),  # backoff is longer
        (ModelRateLimited("429", retry_after_s=20.0), 1, 9.0, 20.0),  # ends at 29 s: fits
        (ModelRateLimited("429", retry_after_s=12.0), 3, 0.0, 12.0),  # beyond max_delay_s
    ],
)
def test_retriable_errors_wait(
    error: ModelError, attempt: int, elapsed_s: float, expected: float
) -> None:
    assert next_delay(NO_JITTER, error, attempt, elapsed_s, 0.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("error", "attempt", "elapsed_s", "stop"),
    [
        (ModelRejected("400"), 1, 0.0, "not_retriable"),
        (ModelNotAllowed("replay"), 1, 0.0, "not_retriable"),
        (ModelUnavailable("503"), 4, 0.0, "attempts_exhausted"),
        (ModelTimeout("read"), 5, 0.0, "attempts_exhausted"),
        (ModelUnavailable("503"), 1, 29.9, "budget_exhausted"),
        (ModelRateLimited("429", retry_after_s=31.0), 1, 0.0, "budget_exhausted"),
        (ModelRateLimited("429", retry_after_s=20.0), 1, 10.5, "budget_exhausted"),
    ],
)
def test_when_to_stop(error: ModelError, attempt: int, elapsed_s: float, stop: str) -> None:
    decision = decide(NO_JITTER, error, attempt, elapsed_s, 0.0)
    assert decision.delay_s is None
    assert decision.stop == stop
    assert next_delay(NO_JITTER, error, attempt, elapsed_s, 0.0) is None


@pytest.mark.parametrize("max_attempts", [1, 2, 4, 7])
def test_attempts_never_exceed_the_cap(max_attempts: int) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, max_total_s=1e9)
    error = ModelUnavailable("down")
    waits = [next_delay(policy, error, n, 0.0, 0.3) for n in range(1, max_attempts + 1)]
    assert all(wait is not None for wait in waits[:-1])
    assert waits[-1] is None  # after the last allowed attempt, stop


@pytest.mark.parametrize(
    ("error", "fails_over", "is_fault"),
    [
        (ModelRejected("400"), False, False),
        (ModelUnavailable("503"), True, True),
        (ModelTimeout("read"), True, True),
        (ModelRateLimited("429"), True, True),
        (ModelBadResponse("not json"), True, True),
        (ModelNotAllowed("replay"), True, True),
    ],
)
def test_fail_over_and_fault(error: ModelError, fails_over: bool, is_fault: bool) -> None:
    assert fail_over(error) is fails_over
    assert is_deployment_fault(error) is is_fault


@given(
    retry_after=st.one_of(st.none(), st.floats(0.0, 100.0)),
    attempt=st.integers(1, 10),
    elapsed=st.floats(0.0, 40.0),
    rand=st.floats(0.0, 1.0, exclude_max=True),
)
def test_a_wait_honours_retry_after_and_the_budget(
    retry_after: float | None, attempt: int, elapsed: float, rand: float
) -> None:
    policy = RetryPolicy(max_attempts=10)
    delay = next_delay(policy, ModelRateLimited("429", retry_after), attempt, elapsed, rand)
    wanted = max(backoff_s(policy, attempt, rand), retry_after or 0.0)
    if delay is None:
        assert attempt >= policy.max_attempts or elapsed + wanted > policy.max_total_s
    else:
        assert delay == wanted
        assert elapsed + delay <= policy.max_total_s
