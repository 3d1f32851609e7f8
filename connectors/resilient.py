"""Model calls that survive failures: bounded retries, a circuit breaker per deployment,
and an ordered chain of fallback deployments.

The decisions (when to retry, when a breaker opens, what health means) live in
``agents.retry`` and ``agents.breaker``; this module calls, waits and records.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from agents import breaker
from agents.breaker import BreakerMode, BreakerPolicy, BreakerState, CircuitOpen, HealthState
from agents.errors import ModelError
from agents.ports import LLM, ChatMessage, Completion
from agents.retry import RetryDecision, RetryPolicy, decide, fail_over, is_deployment_fault

logger = logging.getLogger(__name__)

OK = "ok"
"""The outcome of a successful attempt; a failed one is named by its error's ``kind``."""

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
OnAttempt = Callable[[str, str], None]
"""``on_attempt(deployment, outcome)``, once per model call; ``outcome`` is ``OK`` or a kind."""
_Call = Callable[[LLM], Awaitable[Completion]]


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model call: where it went, how it ended, and the wait that followed it."""

    deployment: str
    number: int
    """1-based, counted per deployment."""
    outcome: str
    latency_s: float
    delay_s: float | None = None
    """Wait before the next call to the same deployment; ``None`` when there was none."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChainOutcome:
    """How a call through the chain ended: a completion, or the last error."""

    result: Completion | ModelError
    deployment: str
    """The deployment that answered, else the last one called ("" if none was)."""
    log: tuple[Attempt, ...]

    @property
    def attempts(self) -> int:
        return len(self.log)


@dataclass(frozen=True, slots=True)
class ResilientCompletion:
    """A completion, the deployment that gave it, and every attempt it took."""

    completion: Completion
    deployment: str
    attempts: int
    log: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment's health, from its breaker, for ``SpecialistHealth`` and metrics."""

    deployment: str
    model: str
    state: HealthState
    breaker: BreakerMode
    error_rate: float
    calls: int
    failures: int
    window_s: float
    last_success_at: datetime | None


class ResilientLLM:
    """Calls the first deployment whose breaker allows it, retrying per ``RetryPolicy``,
    then fails over down the chain. Time, sleep and randomness are injectable.

    ``max_attempts`` counts per deployment; ``max_total_s`` bounds the waits of the
    whole call, so a deployment reached by fail-over gets its first attempt at once
    and retries only within what is left. A rejected request (4xx) is not failed over.
    """

    def __init__(
        self,
        chain: Sequence[tuple[str, LLM]],
        *,
        retry: RetryPolicy | None = None,
        breaker_policy: BreakerPolicy | None = None,
        on_attempt: OnAttempt | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        names = [name for name, _ in chain]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need one or more uniquely named deployments, got {names}")
        self._chain = tuple(chain)
        self._retry = retry or RetryPolicy()
        policy = breaker_policy or BreakerPolicy()
        self._breakers = {name: BreakerState(policy) for name in names}
        self._on_attempt = on_attempt
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rand = rand

    @property
    def models(self) -> tuple[tuple[str, LLM], ...]:
        """The chain itself: (deployment, model) in fallback order."""
        return self._chain

    @property
    def deployments(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._chain)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float,
        max_tokens: int,
        json_mode: bool = False,
        json_schema: str | None = None,
        forbid: str = "",
        seed: int | None = None,
    ) -> ResilientCompletion:
        """The first completion the chain gives; raises the last ``ModelError`` otherwise."""
        outcome = await self.run(
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            json_mode=json_mode,
            json_schema=json_schema,
            forbid=forbid,
            seed=seed,
        )
        if isinstance(outcome.result, ModelError):
            raise outcome.result
        return ResilientCompletion(
            outcome.result, outcome.deployment, outcome.attempts, outcome.log
        )

    async def run(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float,
        max_tokens: int,
        json_mode: bool = False,
        json_schema: str | None = None,
        forbid: str = "",
        seed: int | None = None,
        prefer: str | None = None,
    ) -> ChainOutcome:
        """Like ``complete``, but a failure is returned (with its attempt log), not raised.
        ``prefer`` names the deployment to try first (the router's pick); the rest of the
        chain stays in order behind it."""

        def call(llm: LLM) -> Awaitable[Completion]:
            return llm.complete(
                messages,
                temperature=temperature,
                max_tokens=max_tokens,
                json_mode=json_mode,
                json_schema=json_schema,
                forbid=forbid,
                seed=seed,
            )

        started = self._clock()
        log: list[Attempt] = []
        last: ModelError | None = None
        for name, llm in self._ordered(prefer):
            result = await self._on_deployment(name, llm, call, started, log)
            if isinstance(result, Completion):
                return ChainOutcome(result, name, tuple(log))
            last = result or last
            if last is not None and not fail_over(last):
                break
        error = last or CircuitOpen(f"every circuit is open: {', '.join(self.deployments)}")
        return ChainOutcome(error, log[-1].deployment if log else "", tuple(log))

    def _ordered(self, prefer: str | None) -> tuple[tuple[str, LLM], ...]:
        first = tuple(pair for pair in self._chain if pair[0] == prefer)
        return first + tuple(pair for pair in self._chain if pair[0] != prefer)

    def health(self) -> list[DeploymentHealth]:
        """Every deployment's health now, in chain order."""
        now, wall = self._clock(), self._wall_clock()
        return [self._health(name, llm, now, wall) for name, llm in self._chain]

    async def aclose(self) -> None:
        """Close every deployment that can be closed."""
        for _, llm in self._chain:
            if isinstance(llm, _Closable):
                await llm.aclose()

    async def _on_deployment(
        self, name: str, llm: LLM, call: _Call, started: float, log: list[Attempt]
    ) -> Completion | ModelError | None:
        """Attempts on one deployment while its breaker allows and the policy says retry.

        ``None``: the breaker refused the first attempt, nothing was called.
        """
        last: ModelError | None = None
        number = 0
        while True:
            number += 1
            if not self._admit(name):
                logger.debug("circuit of %s is open; skipping it", name)
                return last
            result, latency_s = await self._attempt(name, llm, call)
            if isinstance(result, Completion):
                log.append(Attempt(name, number, OK, latency_s))
                return result
            decision = self._decide(name, result, number, started)
            log.append(Attempt(name, number, result.kind, latency_s, decision.delay_s, str(result)))
            self._log_failure(name, number, result, decision)
            if decision.delay_s is None:
                return result
            await self._sleep(decision.delay_s)
            last = result

    async def _attempt(
        self, name: str, llm: LLM, call: _Call
    ) -> tuple[Completion | ModelError, float]:
        """One call, its outcome recorded in the breaker and reported to ``on_attempt``."""
        begun = self._clock()
        result: Completion | ModelError
        try:
            result = await call(llm)
        except ModelError as exc:
            result = exc
        ended = self._clock()
        failed = isinstance(result, ModelError) and is_deployment_fault(result)
        self._breakers[name] = breaker.record(self._breakers[name], ended, ok=not failed)
        if self._on_attempt is not None:
            self._on_attempt(name, result.kind if isinstance(result, ModelError) else OK)
        return result, ended - begun

    def _decide(self, name: str, error: ModelError, number: int, started: float) -> RetryDecision:
        if self._breakers[name].mode == "open":
            # This failure opened the breaker: fail over now rather than wait for a refusal.
            return RetryDecision(delay_s=None, stop="circuit_open")
        return decide(self._retry, error, number, self._clock() - started, self._rand())

    def _admit(self, name: str) -> bool:
        allowed, self._breakers[name] = breaker.allow(self._breakers[name], self._clock())
        return allowed

    @staticmethod
    def _log_failure(name: str, number: int, error: ModelError, decision: RetryDecision) -> None:
        if decision.delay_s is not None:
            logger.warning(
                "model call %d to %s failed (%s: %s); retrying in %.2fs",
                number, name, error.kind, error, decision.delay_s,
            )  # fmt: skip
        else:
            logger.warning(
                "model call %d to %s failed (%s: %s); giving up on it: %s",
                number, name, error.kind, error, decision.stop,
            )  # fmt: skip

    def _health(self, name: str, llm: LLM, now: float, wall: float) -> DeploymentHealth:
        state = self._breakers[name]
        counts = breaker.stats(state, now)
        last = counts.last_success_at
        return DeploymentHealth(
            deployment=name,
            model=llm.name,
            state=breaker.health(state, now),
            breaker=counts.mode,
            error_rate=counts.error_rate,
            calls=counts.calls,
            failures=counts.failures,
            window_s=state.policy.window_s,
            last_success_at=None if last is None else _wall_time(wall - (now - last)),
        )


def _wall_time(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)
