"""A chaos run: workers under open-loop load through the loopback model server, the
fault schedule applied, quiescence awaited, every topic of the namespace checked, and
the namespace deleted."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition

from connectors.topic_reader import partitions_of, read_partitions
from schemas import topics
from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.request_events import DeadLettered, ResponseDelivered, TaskAssigned
from streams.bench.namespace import scratch_namespace
from streams.chaos import schedule
from streams.chaos.check import Answer, Fault, Observed, Report, check
from streams.chaos.load import Load
from streams.chaos.model_server import MODEL, ModelServer
from streams.chaos.procs import OwnBroker, Workers, namespace_env
from streams.chaos.schedule import FaultPlan, Planned
from streams.settings import AppSettings
from streams.worker import provision

_log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ChaosPlan:
    out: Path
    requests: int = 300
    rate: float = 20.0
    workers: int = 2
    partitions: int = 6
    latency_s: float = 0.2
    worker_kills: int | None = None
    kill_every_s: tuple[float, float] = (20.0, 30.0)
    quiet_start_s: float = 30.0
    broker_stop_s: float = 20.0
    drain_s: float = 240.0
    seed: int = 14
    keep_topics: bool = False
    """Leave the namespace's topics for inspection instead of deleting them."""
    static_membership: bool = False
    """Each worker slot keeps one group instance id across restarts."""
    worker_env: dict[str, str] = field(default_factory=dict)
    """Settings the workers get on top of the run's own (``GUARDIAN_*`` names)."""


@dataclass
class Timeline:
    t0: float = field(default_factory=time.time)
    lines: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def note(self, progress: Progress, text: str) -> None:
        line = f"t+{time.time() - self.t0:6.1f}s {text}"
        self.lines.append(line)
        progress(line)


def worker_env(settings: AppSettings, base_url: str, plan: ChaosPlan) -> dict[str, str]:
    return {
        **namespace_env(settings),
        "GUARDIAN_MODEL_BACKEND": "openai",
        "GUARDIAN_OPENAI_BASE_URL": base_url,
        "GUARDIAN_OPENAI_MODEL": MODEL,
        "GUARDIAN_GUARD_EMBEDDER": "hashing",
        "GUARDIAN_GUARD_PII_CHECK": "false",
        **plan.worker_env,
    }


async def run_chaos(
    settings: AppSettings, plan: ChaosPlan, own: OwnBroker | None, progress: Progress
) -> tuple[Report, Timeline]:
    timeline = Timeline()
    namespace = kept_namespace if plan.keep_topics else scratch_namespace
    with namespace(settings, "chaos", plan.partitions) as scoped:
        async with ModelServer(plan.latency_s) as model:
            workers = Workers(
                scoped,
                worker_env(scoped, model.base_url, plan),
                plan.out,
                plan.workers,
                static_membership=plan.static_membership,
            )
            workers.start_all()
            try:
                load = await _under_faults(scoped, plan, workers, own, timeline, progress)
                seen = await _observe(scoped, load, model.calls, timeline.faults)
            finally:
                workers.stop_all()
            timeline.note(
                progress, f"workers that exited by themselves: {workers.exited_by_themselves}"
            )
    return check(seen), timeline


@contextmanager
def kept_namespace(settings: AppSettings, prefix: str, partitions: int) -> Iterator[AppSettings]:
    """A fresh namespace whose topics stay after the run (``--keep-topics``)."""
    scoped = settings.with_namespace(f"{prefix}{uuid.uuid4().hex[:8]}")
    scoped = scoped.model_copy(
        update={"kafka": scoped.kafka.model_copy(update={"partitions": partitions})}
    )
    provision(scoped)
    _log.warning("topics of namespace %s are kept", scoped.kafka.topic_namespace)
    yield scoped


async def _under_faults(
    settings: AppSettings,
    plan: ChaosPlan,
    workers: Workers,
    own: OwnBroker | None,
    timeline: Timeline,
    progress: Progress,
) -> Load:
    await workers.joined()
    ns = settings.kafka.topic_namespace
    load = Load(
        settings.kafka,
        topics.qualified(topics.REQUESTS, ns),
        topics.qualified(topics.RESPONSES, ns),
    )
    stop = asyncio.Event()
    follower = asyncio.create_task(load.follow(stop))
    run_s = plan.requests / plan.rate
    faults = schedule.plan(
        FaultPlan(
            run_s=run_s,
            kill_every_s=plan.kill_every_s,
            worker_kills=plan.worker_kills,
            broker_faults=own is not None,
            quiet_start_s=plan.quiet_start_s,
            broker_stop_s=plan.broker_stop_s,
            seed=plan.seed,
        )
    )
    timeline.t0 = time.time()
    timeline.note(
        progress, f"load: {plan.requests} requests at {plan.rate:g}/s; faults: {len(faults)}"
    )
    sending = asyncio.create_task(load.send(plan.requests, plan.rate))
    try:
        for n, fault in enumerate(faults):
            await asyncio.sleep(max(0.0, timeline.t0 + fault.at_s - time.time()))
            await _apply(fault, n, workers, own, plan, timeline, progress)
            timeline.note(progress, f"sent {len(load.sent)}, answered {len(load.answered)}")
        await sending
        timeline.note(progress, f"all {len(load.sent)} sent; waiting for quiescence")
        quiet = await load.quiet(plan.drain_s)
        await asyncio.sleep(5.0)  # late duplicates, if any, land before the topics are read
        timeline.note(progress, f"quiet={quiet}: answered {len(load.answered)} of {len(load.sent)}")
        if workers.replace_exited():
            timeline.note(progress, "a worker had exited by itself")
    finally:
        sending.cancel()
        stop.set()
        await asyncio.gather(sending, follower, return_exceptions=True)
    return load


async def _apply(
    fault: Planned,
    n: int,
    workers: Workers,
    own: OwnBroker | None,
    plan: ChaosPlan,
    timeline: Timeline,
    progress: Progress,
) -> None:
    if workers.replace_exited():
        timeline.note(progress, "a worker had exited by itself; restarted it")
    started = time.time()
    before = await workers.members()
    if fault.kind == schedule.WORKER_KILL:
        index = n % workers.count
        timeline.note(
            progress, f"SIGKILL worker {index} (pid {workers.procs[index].pid}); restarting it"
        )
        workers.kill_one(index)
    elif fault.kind == schedule.BROKER_KILL and own is not None:
        timeline.note(progress, "SIGKILL broker; restarting it")
        await own.kill_and_restart()
    elif fault.kind == schedule.BROKER_STOP and own is not None:
        timeline.note(progress, f"SIGSTOP broker for {plan.broker_stop_s:g}s")
        await own.pause(plan.broker_stop_s)
        timeline.note(progress, "SIGCONT broker")
    await workers.joined(before if fault.kind == schedule.WORKER_KILL else frozenset())
    ended = time.time()
    timeline.faults.append(Fault(fault.kind, started, ended))
    timeline.note(progress, f"{fault.kind} over: group stable after {ended - started:.1f}s")


async def _read(settings: AppSettings, *specs: topics.TopicSpec) -> list[object]:
    ns = settings.kafka.topic_namespace
    parts = []
    for spec in specs:
        name = topics.qualified(spec, ns)
        parts += [TopicPartition(name, p) for p in await partitions_of(settings.kafka, name)]
    return await read_partitions(settings.kafka, parts) if parts else []


def _decoded(records: list[object], kind: type, codec: Codec) -> list[tuple[object, float]]:
    out: list[tuple[object, float]] = []
    for r in records:
        try:
            out.append((codec.decode(r.value, kind), r.timestamp / 1000))  # type: ignore[attr-defined]
        except DecodeError:
            continue
    return out


async def _observe(settings: AppSettings, load: Load, calls: int, faults: list[Fault]) -> Observed:
    codec = Codec()
    responses = _decoded(await _read(settings, topics.RESPONSES), ResponseDelivered, codec)
    tasks = _decoded(await _read(settings, *topics.TASK_LANES), TaskAssigned, codec)
    letters = _decoded(await _read(settings, topics.DEAD_LETTERS), DeadLettered, codec)
    return Observed(
        sent=dict(load.sent),
        answers=[Answer(r, at) for r, at in responses],  # type: ignore[arg-type]
        tasks=[t for t, _ in tasks],  # type: ignore[misc]
        dead_letters=[d for d, _ in letters],  # type: ignore[misc]
        model_calls=calls,
        faults=faults,
    )
