"""specialist_stage: call the model for each task, concurrently, and record the answer
(or the typed failure) before anything downstream depends on it."""

from __future__ import annotations

import asyncio
import time

from agents.errors import ModelError, ModelTimeout
from agents.ports import Completion
from agents.prompts import build_messages
from agents.specialist import answered
from schemas import topics
from schemas.request_events import TaskAssigned
from streams.runtime import Runtime
from streams.stage import Record, run


def register(rt: Runtime) -> None:
    source = rt.topic(topics.TASKS)

    @rt.app.agent(
        source, name="specialist_stage", concurrency=rt.settings.worker.specialist_concurrency
    )
    async def specialist_stage(stream: object) -> None:
        await run(rt, "specialist", stream, lambda record: handle(rt, record))


async def handle(rt: Runtime, record: Record) -> None:
    task = rt.codec.decode(record.value, TaskAssigned)
    started = time.perf_counter()
    outcome = await call_model(rt, task)
    latency_ms = (time.perf_counter() - started) * 1000
    _count(rt, outcome, latency_ms)
    answer = answered(
        task,
        outcome,
        deployment=rt.ports.deployment,
        latency_ms=latency_ms,
        attempts=1,
        now=rt.clock(),
    )
    await rt.emit(answer)


def _count(rt: Runtime, outcome: Completion | ModelError, latency_ms: float) -> None:
    m = rt.metrics
    model = rt.ports.deployment
    m.model_seconds.labels(model).observe(latency_ms / 1000)
    if isinstance(outcome, ModelError):
        m.model_calls.labels(model, outcome.kind).inc()
        return
    m.model_calls.labels(model, "ok").inc()
    m.tokens.labels(model, "prompt").inc(outcome.prompt_tokens)
    m.tokens.labels(model, "completion").inc(outcome.completion_tokens)


async def call_model(rt: Runtime, task: TaskAssigned) -> Completion | ModelError:
    timeout = rt.settings.worker.model_timeout_s
    try:
        return await asyncio.wait_for(
            rt.ports.llm.complete(
                build_messages(task),
                temperature=task.temperature,
                max_tokens=task.max_tokens,
                json_mode=task.output_constraint == "json",
            ),
            timeout=timeout,
        )
    except TimeoutError:
        return ModelTimeout(f"no answer within {timeout:.1f}s")
    except ModelError as exc:
        return exc
