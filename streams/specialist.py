"""specialist_stage: call the model for each task, concurrently, and record the answer
(or the typed failure) before anything downstream depends on it.

One stage per priority lane topic (``streams.lanes``); the stages share
``specialist_concurrency`` model-call slots, granted most urgent lane first. Each
lane stage reads twice that many tasks ahead, so when a slot frees, the lanes' next
tasks are already waiting for it and the most urgent one gets it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from agents.errors import ModelTimeout
from agents.knowledge import RETRIEVAL, retrieval_query
from agents.ports import Completion
from agents.priority import LaneScheduler
from agents.prompts import build_messages
from agents.specialist import answered
from connectors.resilient import ChainOutcome
from schemas.request_events import Passage, TaskAssigned
from schemas.topics import TopicSpec
from streams.lanes import LANES, SlotPool, lane_slot
from streams.runtime import Runtime
from streams.stage import Record, run


def register(rt: Runtime) -> None:
    w = rt.settings.worker
    pool = SlotPool(w.specialist_concurrency, LaneScheduler(len(LANES), w.priority_guard_every))
    for lane, (name, spec) in enumerate(LANES):
        _register_lane(rt, pool, lane, name, spec)


def _register_lane(rt: Runtime, pool: SlotPool, lane: int, name: str, spec: TopicSpec) -> None:
    async def in_slot(record: Record) -> None:
        async with lane_slot(pool, rt.metrics, lane, name):
            await handle(rt, record)

    # The normal lane keeps the single-lane stage's name.
    stage_name = "specialist_stage" if name == "normal" else f"specialist_stage_{name}"

    @rt.app.agent(rt.topic(spec), name=stage_name, concurrency=2 * pool.size)
    async def specialist_stage(stream: object) -> None:
        await run(rt, "specialist", stream, in_slot)


async def handle(rt: Runtime, record: Record) -> None:
    task = rt.codec.decode(record.value, TaskAssigned)
    passages: tuple[Passage, ...] = ()
    if task.specialist == RETRIEVAL:
        k = rt.settings.knowledge
        # Embedding the query is CPU work: keep it off the event loop.
        passages = await asyncio.to_thread(
            rt.ports.knowledge.search,
            retrieval_query(task.instruction),
            k=k.top_k,
            min_score=k.min_score,
        )
    started = time.perf_counter()
    outcome = await call_model(rt, task, passages)
    latency_ms = (time.perf_counter() - started) * 1000
    _count(rt, outcome, latency_ms)
    answer = answered(
        task,
        outcome.result,
        deployment=outcome.deployment or task.deployment,
        latency_ms=latency_ms,
        attempts=max(1, outcome.attempts),
        now=rt.clock(),
        passages=passages,
    )
    await rt.emit(answer)


def _count(rt: Runtime, outcome: ChainOutcome, latency_ms: float) -> None:
    """Latency and tokens per answering deployment (attempts are counted as they happen)."""
    m = rt.metrics
    deployment = outcome.deployment or "none"
    m.model_seconds.labels(deployment).observe(latency_ms / 1000)
    if isinstance(outcome.result, Completion):
        m.tokens.labels(deployment, "prompt").inc(outcome.result.prompt_tokens)
        m.tokens.labels(deployment, "completion").inc(outcome.result.completion_tokens)


async def call_model(
    rt: Runtime, task: TaskAssigned, passages: Sequence[Passage] = ()
) -> ChainOutcome:
    """The chain's outcome: a completion or the last typed error, within the task's cap;
    ``passages`` are shown to the model as sources."""
    timeout = rt.settings.worker.model_timeout_s
    try:
        return await asyncio.wait_for(
            rt.ports.llm.run(
                build_messages(task, passages),
                temperature=task.temperature,
                max_tokens=task.max_tokens,
                json_mode=task.output_constraint == "json",
                prefer=task.deployment,
            ),
            timeout=timeout,
        )
    except TimeoutError:
        failure = ModelTimeout(f"no answer within {timeout:.1f}s, retries included")
        return ChainOutcome(failure, task.deployment, ())
