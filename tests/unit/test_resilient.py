"""ResilientLLM: retries honouring Retry-After, the attempt cap, breakers, fail-over, health.

Deployments are real HTTP servers on loopback (``FakeModelService``) or ``ScriptedLLM``;
time is a fake clock whose ``sleep`` records the wait and advances it, except
where the real clock is the thing under test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.breaker import BreakerPolicy, CircuitOpen
from agents.errors import ModelBadResponse, ModelRejected, ModelUnavailable
from agents.ports import LLM, ChatMessage
from agents.retry import RetryPolicy
from connectors.llm_openai import OpenAICompatibleLLM, OpenAISettings
from connectors.llm_scripted import ScriptedLLM
from connectors.resilient import OK, ChainOutcome, ResilientCompletion, ResilientLLM
from tests.fake_model_service import MODEL, FakeModelService, Reply, completion, error

START = 1000.0
WALL_START = 1_700_000_000.0
FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
"""The default attempt cap and budget with short waits, for tests on the real clock."""


class FakeClock:
    """A monotonic clock for ``ResilientLLM``: ``sleep`` records the wait and advances time."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + (self.now - START)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def question(key: str = "q") -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"[[script:{key}]] What is the capital of France?")]


async def ask(llm: ResilientLLM, key: str = "q") -> ResilientCompletion:
    return await llm.complete(question(key), temperature=0.0, max_tokens=32)


async def outcome_of(llm: ResilientLLM, key: str = "q") -> ChainOutcome:
    return await llm.run(question(key), temperature=0.0, max_tokens=32)


def resilient(
    chain: list[tuple[str, LLM]], clock: FakeClock | None = None, **options: Any
) -> ResilientLLM:
    """A ``ResilientLLM`` on ``clock`` (real time if ``None``), with no jitter."""
    timing: dict[str, Any] = {}
    if clock is not None:
        timing = {"clock": clock, "sleep": clock.sleep, "wall_clock": clock.wall}
    return ResilientLLM(chain, rand=lambda: 0.0, **timing, **options)


def scripted(*steps: dict[str, Any], key: str = "q", name: str = "scripted") -> ScriptedLLM:
    return ScriptedLLM.from_dict({"entries": {key: list(steps)}}, name=name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def primary() -> AsyncIterator[FakeModelService]:
    async with FakeModelService() as service:
        yield service


@pytest.fixture
async def fallback() -> AsyncIterator[FakeModelService]:
    async with FakeModelService(completion("Paris (fallback)")) as service:
        yield service


@pytest.fixture
async def http_chain(
    primary: FakeModelService, fallback: FakeModelService
) -> AsyncIterator[list[tuple[str, LLM]]]:
    """``primary`` then ``fallback``, each an ``OpenAICompatibleLLM`` on its fake service."""
    clients = [
        OpenAICompatibleLLM(OpenAISettings(base_url=service.base_url, model=MODEL))
        for service in (primary, fallback)
    ]
    yield [("primary", clients[0]), ("fallback", clients[1])]
    for client in clients:
        await client.aclose()


# --- Retry-After -------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after_s", "waited"),
    [(3.0, 3.0), (12.0, 12.0), (0.1, 0.25)],  # never sooner; backoff when it is longer
)
async def test_no_retry_before_retry_after(
    clock: FakeClock, retry_after_s: float, waited: float
) -> None:
    model = scripted({"error": "rate_limited", "retry_after_s": retry_after_s}, {"answer": "Paris"})
    done = await ask(resilient([("only", model)], clock))
    assert done.completion.content == "Paris"
    assert clock.sleeps == [waited]
    assert [(a.outcome, a.delay_s) for a in done.log] == [("rate_limited", waited), (OK, None)]
    assert done.attempts == 2


async def test_retry_after_header_sets_the_wait(
    clock: FakeClock, primary: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(error(429, headers={"Retry-After": "2"}), completion("Paris"))
    done = await ask(resilient(http_chain, clock))
    assert (done.deployment, done.completion.content, done.attempts) == ("primary", "Paris", 2)
    assert clock.sleeps == [2.0]


async def test_the_second_request_arrives_after_retry_after_on_the_real_clock(
    primary: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(error(429, headers={"Retry-After": "1"}), completion("Paris"))
    done = await ask(resilient(http_chain, retry=FAST))
    assert (done.deployment, done.attempts) == ("primary", 2)
    first, second = primary.received
    assert second.at - first.at >= 1.0  # measured where the requests arrive


async def test_a_retry_after_beyond_the_budget_fails_over_at_once(
    clock: FakeClock,
    primary: FakeModelService,
    fallback: FakeModelService,
    http_chain: list[tuple[str, LLM]],
) -> None:
    primary.script(error(429, headers={"Retry-After": "60"}))
    done = await ask(resilient(http_chain, clock))
    assert (done.deployment, done.completion.content) == ("fallback", "Paris (fallback)")
    assert clock.sleeps == []
    assert (len(primary.received), len(fallback.received)) == (1, 1)


# --- attempts and what is retried ----------------------------------------------


LENIENT = BreakerPolicy(consecutive_failures=100, min_calls=100)
"""A breaker that stays closed, so the retry policy alone bounds the attempts."""


@pytest.mark.parametrize("max_attempts", [1, 2, 4, 7])
async def test_attempts_never_exceed_the_cap(clock: FakeClock, max_attempts: int) -> None:
    model = scripted({"error": "unavailable"})
    retry = RetryPolicy(max_attempts=max_attempts, max_total_s=1e6)
    llm = resilient([("only", model)], clock, retry=retry, breaker_policy=LENIENT)
    with pytest.raises(ModelUnavailable):
        await ask(llm)
    assert model.total_calls == max_attempts
    assert len(clock.sleeps) == max_attempts - 1
    outcome = await outcome_of(llm)
    assert outcome.attempts == max_attempts
    assert isinstance(outcome.result, ModelUnavailable)


async def test_the_breaker_can_stop_retries_before_the_cap(clock: FakeClock) -> None:
    model = scripted({"error": "unavailable"})
    llm = resilient([("only", model)], clock, retry=RetryPolicy(max_attempts=8))
    outcome = await outcome_of(llm)
    assert outcome.attempts == 5  # five consecutive failures open it
    assert llm.health()[0].breaker == "open"


async def test_malformed_bodies_are_retried_then_surfaced(
    clock: FakeClock, primary: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(Reply(body=b'{"choices": [{"mess'))
    llm = resilient(http_chain[:1], clock)
    with pytest.raises(ModelBadResponse):
        await ask(llm)
    assert len(primary.received) == 4
    outcome = await outcome_of(llm)
    assert [a.outcome for a in outcome.log] == ["bad_response"]  # the 5th failure opened it


async def test_a_400_is_neither_retried_nor_failed_over(
    clock: FakeClock,
    primary: FakeModelService,
    fallback: FakeModelService,
    http_chain: list[tuple[str, LLM]],
) -> None:
    primary.script(error(400, "prompt too long"))
    llm = resilient(http_chain, clock)
    with pytest.raises(ModelRejected, match="prompt too long"):
        await ask(llm)
    assert (len(primary.received), len(fallback.received)) == (1, 0)
    assert clock.sleeps == []
    assert llm.health()[0].state == "healthy"  # the request was at fault, not the deployment


# --- breakers and fail-over ------------------------------------------------------


async def open_primary(llm: ResilientLLM) -> None:
    """Calls until the primary's breaker opens; each call is still answered."""
    for _ in range(5):
        done = await ask(llm)
        assert done.deployment == "fallback"
        if llm.health()[0].breaker == "open":
            return
    pytest.fail("the primary's breaker never opened")


async def test_with_the_primary_down_the_fallback_answers_without_touching_it(
    primary: FakeModelService, fallback: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(error(503, "overloaded"))
    llm = resilient(http_chain, retry=FAST)
    await open_primary(llm)
    primary_calls = len(primary.received)
    started = time.perf_counter()
    done = await ask(llm)
    took = time.perf_counter() - started
    assert (done.deployment, done.attempts) == ("fallback", 1)
    assert len(primary.received) == primary_calls
    assert took < 1.0
    assert [h.state for h in llm.health()] == ["down", "healthy"]


async def test_a_half_open_probe_closes_the_breaker_when_the_primary_recovers(
    clock: FakeClock, primary: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(*[error(503)] * 5, completion("Paris (primary)"))
    llm = resilient(http_chain, clock)
    await open_primary(llm)
    clock.now += 14.0  # still open: the fallback answers, the primary is not called
    assert (await ask(llm)).deployment == "fallback"
    assert len(primary.received) == 5
    clock.now += 1.0
    done = await ask(llm)
    assert (done.deployment, done.completion.content) == ("primary", "Paris (primary)")
    assert len(primary.received) == 6
    [health, _] = llm.health()
    assert (health.breaker, health.state, health.calls, health.failures) == (
        "closed",
        "healthy",
        1,
        0,
    )


async def test_a_failed_probe_reopens_the_breaker(
    clock: FakeClock, primary: FakeModelService, http_chain: list[tuple[str, LLM]]
) -> None:
    primary.script(error(503))
    llm = resilient(http_chain, clock)
    await open_primary(llm)
    clock.now += 15.0
    done = await ask(llm)
    assert done.deployment == "fallback"
    assert [a.deployment for a in done.log] == ["primary", "fallback"]  # one probe, no retry
    assert llm.health()[0].breaker == "open"


async def test_when_every_circuit_is_open_nothing_is_called(clock: FakeClock) -> None:
    model = scripted({"error": "timeout"})
    llm = resilient([("only", model)], clock, retry=RetryPolicy(max_attempts=5))
    await outcome_of(llm)
    calls = model.total_calls
    outcome = await outcome_of(llm)
    assert isinstance(outcome.result, CircuitOpen)
    assert (outcome.attempts, outcome.deployment, model.total_calls) == (0, "", calls)


# --- reporting -------------------------------------------------------------------


async def test_every_attempt_is_counted_and_every_retry_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str]] = []
    first = scripted({"error": "unavailable"}, name="first")
    second = scripted({"error": "timeout"}, {"answer": "Paris"}, name="second")
    llm = resilient(
        [("first", first), ("second", second)],
        clock,
        retry=RetryPolicy(max_attempts=2),
        on_attempt=lambda deployment, outcome: seen.append((deployment, outcome)),
    )
    with caplog.at_level(logging.WARNING, logger="connectors.resilient"):
        done = await ask(llm)
    assert seen == [
        ("first", "unavailable"),
        ("first", "unavailable"),
        ("second", "timeout"),
        ("second", OK),
    ]
    assert [(a.deployment, a.number, a.outcome) for a in done.log] == [
        (d, n, o) for (d, o), n in zip(seen, [1, 2, 1, 2], strict=True)
    ]
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert retries[0].startswith("model call 1 to first failed (unavailable")


def status_of(llm: ResilientLLM) -> Callable[[], list[tuple[str, str, float]]]:
    return lambda: [(h.deployment, h.state, round(h.error_rate, 2)) for h in llm.health()]


async def test_health_reports_state_rates_and_the_last_success_in_wall_time(
    clock: FakeClock,
) -> None:
    flaky = scripted({"answer": "a"}, {"error": "unavailable"}, {"answer": "b"})
    steady = scripted({"answer": "c"}, name="steady")
    llm = resilient(
        [("flaky", flaky), ("steady", steady)], clock, retry=RetryPolicy(max_attempts=1)
    )
    health = status_of(llm)
    assert health() == [("flaky", "healthy", 0.0), ("steady", "healthy", 0.0)]
    await ask(llm)
    clock.now += 2.0
    await ask(llm)  # flaky fails once, steady answers
    assert health() == [("flaky", "degraded", 0.5), ("steady", "healthy", 0.0)]
    [flaky_health, steady_health] = llm.health()
    assert flaky_health.last_success_at == datetime.fromtimestamp(WALL_START, tz=UTC)
    assert steady_health.last_success_at == datetime.fromtimestamp(WALL_START + 2.0, tz=UTC)
    assert (flaky_health.calls, flaky_health.failures, flaky_health.window_s) == (2, 1, 30.0)
    assert flaky_health.model == "scripted"


def test_deployments_need_unique_names() -> None:
    with pytest.raises(ValueError, match="uniquely named"):
        ResilientLLM([("a", ScriptedLLM()), ("a", ScriptedLLM())])
    with pytest.raises(ValueError, match="uniquely named"):
        ResilientLLM([])
