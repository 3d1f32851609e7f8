"""specialist_stage: call the model for each task, concurrently, and record the answer
(or the typed failure) before anything downstream depends on it.

One stage per priority lane topic (``streams.lanes``); the stages share
``specialist_concurrency`` model-call slots, granted most urgent lane first. Each
lane stage reads twice that many tasks ahead, so when a slot frees, the lanes' next
tasks are already waiting for it and the most urgent one gets it.

A task is answered once: its answer is recorded in the answer store
(``streams.answer_store``) before it is emitted, and a copy of the task (redelivered
after a crash or a rebalance, or re-sent by the refine timer) re-emits the recorded
answer without a model call; a copy arriving while the first is with the model waits
for it. Tasks are answered concurrently but acked in offset order per partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from agents.config import PipelineConfig
from agents.errors import ModelTimeout
from agents.knowledge import RETRIEVAL, retrieval_query
from agents.ports import Completion
from agents.priority import LaneScheduler
from agents.prompts import (
    banned_characters_of,
    build_messages,
    decoded_as_json,
    json_schema_of,
    sampling_seed,
)
from agents.specialist import answered
from connectors import model_deadline
from connectors.resilient import ChainOutcome
from schemas.request_events import Passage, SpecialistAnswered, TaskAssigned
from schemas.topics import TopicSpec
from streams import answer_store, background, guardian
from streams.answer_store import AnswerStore
from streams.lanes import LANES, InOrderAcks, SlotPool, lane_slot
from streams.runtime import Runtime
from streams.stage import Record, run

_EXPIRY_EVERY_S = 30.0
_log = logging.getLogger(__name__)


class Answering:
    """What the lane stages share: model-call slots, the answer store, the tasks now
    with the model (by task event id), and the in-order acks."""

    def __init__(self, rt: Runtime) -> None:
        w = rt.settings.worker
        scheduler = LaneScheduler(len(LANES), w.priority_guard_every)
        self.pool = SlotPool(w.specialist_concurrency, scheduler)
        self.ceiling = 2 * w.specialist_concurrency
        """Tasks each lane stage holds at once (its agent's concurrency, fixed at start):
        slots beyond it cannot be used by one lane."""
        self.store: AnswerStore = answer_store.create(
            rt.app, rt.partitions, timedelta(seconds=w.answer_retain_s), w.answer_max
        )
        self.guard_every = w.priority_guard_every
        self.calling: dict[str, asyncio.Future[None]] = {}
        self.acks = InOrderAcks()
        self._worker = w
        self._metrics = rt.metrics
        rt.metrics.model_slots.set(self.pool.size)

    def apply(self, config: PipelineConfig) -> None:
        """A live config's capacity: its slots and guard, or this worker's settings."""
        cap, w = config.capacity, self._worker
        slots = cap.specialist_concurrency or w.specialist_concurrency
        if slots != self.pool.size:
            _log.warning("model-call slots: %d -> %d", self.pool.size, slots)
            self.pool.resize(slots)
            self._metrics.model_slots.set(slots)
        self.guard_every = cap.priority_guard_every or w.priority_guard_every
        self.pool.guard(self.guard_every)


def register(rt: Runtime) -> Answering:
    answering = Answering(rt)
    for lane, (name, spec) in enumerate(LANES):
        _register_lane(rt, answering, lane, name, spec)

    @background.timer(rt, _EXPIRY_EVERY_S, "answer_store_expiry")
    async def expire_answers() -> None:
        answering.store.expire(rt.clock())

    return answering


def _register_lane(
    rt: Runtime, answering: Answering, lane: int, name: str, spec: TopicSpec
) -> None:
    pool = answering.pool

    async def in_slot(task: TaskAssigned) -> SpecialistAnswered:
        async with lane_slot(pool, rt.metrics, lane, name):
            return await answer(rt, task)

    async def on_record(record: Record) -> None:
        await handle(rt, answering, record, in_slot)

    # The normal lane keeps the single-lane stage's name.
    stage_name = "specialist_stage" if name == "normal" else f"specialist_stage_{name}"

    @rt.app.agent(rt.topic(spec), name=stage_name, concurrency=answering.ceiling)
    async def specialist_stage(stream: object) -> None:
        await run(rt, "specialist", answering.acks.events(stream), on_record)


async def handle(
    rt: Runtime,
    answering: Answering,
    record: Record,
    call: Callable[[TaskAssigned], Awaitable[SpecialistAnswered]],
) -> None:
    """Answer the task of ``record``: the recorded answer if there is one, else ``call``'s,
    recorded before it is emitted."""
    task = rt.codec.decode(record.value, TaskAssigned)
    first = answering.calling.get(task.event_id)
    if first is not None:  # a copy of a task now with the model: wait for that call
        await asyncio.wait({first})
    found = answering.store.lookup(task)
    if found is not None:
        await deliver(rt, found)
        return
    calling = answering.calling[task.event_id] = asyncio.get_running_loop().create_future()
    try:
        result = await call(task)
        answering.store.record(task, result, rt.clock())
    finally:
        calling.set_result(None)
        if answering.calling.get(task.event_id) is calling:
            del answering.calling[task.event_id]
    await deliver(rt, result)


async def deliver(rt: Runtime, answer: SpecialistAnswered) -> None:
    """Emit the answer; with the guardians inline, its verdict right after it (the
    guardian stage then does not run, saving a hop per answer)."""
    await rt.emit(answer)
    if rt.settings.worker.guardian_inline:
        await rt.emit(await guardian.score(rt, answer))


async def answer(rt: Runtime, task: TaskAssigned) -> SpecialistAnswered:
    """One model call for ``task`` (with retrieval first for the retrieval specialist)."""
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
    return answered(
        task,
        outcome.result,
        deployment=outcome.deployment or task.deployment,
        latency_ms=latency_ms,
        attempts=max(1, outcome.attempts),
        now=rt.clock(),
        passages=passages,
    )


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
    """The chain's outcome: a completion or the last typed error, within the worker's
    model timeout (not counting a wait for a local model's turn); ``passages`` are shown
    to the model as sources."""
    timeout = rt.settings.worker.model_timeout_s
    schema = json_schema_of(task)
    messages = build_messages(task, passages)
    try:
        async with model_deadline.deadline(timeout):
            return await rt.ports.llm.run(
                messages,
                temperature=task.temperature,
                max_tokens=task.max_tokens,
                json_mode=decoded_as_json(task),
                json_schema=schema,
                forbid=banned_characters_of(task),
                seed=sampling_seed(messages, task.round),
                prefer=task.deployment,
            )
    except TimeoutError:
        failure = ModelTimeout(
            f"no answer within {timeout:.1f}s, retries included (a local model's queue not)"
        )
        return ChainOutcome(failure, task.deployment, ())
