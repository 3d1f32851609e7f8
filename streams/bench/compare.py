"""``guardian bench``: the pipeline and a raw aiokafka baseline chain, measured alike in one
run, in a namespace of their own.

Each system gets a sweep that goes on until it fails, then a bisection to its
sustainable rate; then repeated runs at one rate common to both, for latency (the worst
run is the one quoted). The pipeline also runs with a fixed model latency, to show
concurrency holds throughput. Micro-benchmarks of the codec and the pure cores come last.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.bench.loadgen import Target, run_load
from streams.bench.micro import run_micro
from streams.bench.namespace import scratch_namespace
from streams.bench.procs import ready_target, spawn, stop, wait_for_line
from streams.bench.sweep import (
    Meters,
    Plan,
    Progress,
    brief,
    find_sustainable,
    latency_runs,
    measure_step,
)
from streams.bench.workers import SLOW_KEY, worker_cmd, worker_env, write_script
from streams.settings import AppSettings

BASELINE_HOPS = 5


@dataclass(frozen=True)
class BenchPlan:
    out: Path
    sweep: Plan = field(default_factory=Plan)
    partitions: int = 6
    workers: int = 1
    model_latency_ms: float = 200.0
    model_latency_rate: float = 50.0
    warm_up_s: float = 2.0
    micro_s: float = 0.5


async def run_bench(settings: AppSettings, plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with scratch_namespace(settings, "bench", plan.partitions) as scoped:
        results["namespace"] = scoped.kafka.topic_namespace
        progress("baseline: raw aiokafka chain")
        results["baseline"] = await _baseline(scoped, plan, progress)
        progress(f"pipeline: {plan.workers} worker(s)")
        results |= await _pipeline(scoped, plan, progress)
    results["ratios"] = ratios(results["pipeline"], results["baseline"])
    results["micro_us"] = run_micro(plan.micro_s)
    return results


async def _baseline(settings: AppSettings, plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    async with _chain(settings, plan) as (target, meters):
        return await _characterize(target, plan, meters, progress)


async def baseline_latency(
    settings: AppSettings, plan: BenchPlan, progress: Progress
) -> dict[str, Any]:
    """The raw chain's latency at ``plan.sweep.latency_rate`` alone (after a warm-up):
    the floor its Kafka hops set, for comparisons at a common rate."""
    async with _chain(settings, plan) as (target, meters):
        await run_load(target, rate=min(plan.sweep.grid), seconds=plan.warm_up_s, drain_s=20)
        step = await measure_step(target, plan.sweep, meters, plan.sweep.latency_rate)
    progress(f"  raw chain {plan.sweep.latency_rate:g} req/s: {brief(step)}")
    lat = step["latency_ms"]
    return {"hops": BASELINE_HOPS - 1, "p50_ms": lat["p50"], "p99_ms": lat["p99"], "step": step}


@contextlib.asynccontextmanager
async def _chain(settings: AppSettings, plan: BenchPlan) -> AsyncIterator[tuple[Target, Meters]]:
    """The raw aiokafka chain running in its own process, ready for load."""
    ns = settings.kafka.topic_namespace
    chain = [f"{ns}.baseline.hop{i}" for i in range(BASELINE_HOPS)]
    _create_topics(settings, chain, plan.partitions)
    bootstrap = settings.kafka.bootstrap_servers
    cmd = [sys.executable, "-m", "streams.bench.baseline", "--bootstrap", bootstrap]
    cmd += ["--chain", ",".join(chain), "--group", chain[0]]
    log = plan.out / "baseline.log"
    proc = spawn(cmd, log)
    try:
        await wait_for_line(log, "baseline ready", proc)
        target = Target(settings.kafka, chain[0], chain[-1], plan.partitions)
        yield target, Meters.of({"baseline": proc.pid}, bootstrap)
    finally:
        stop(proc)


async def _pipeline(settings: AppSettings, plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    script = write_script(plan.out, plan.model_latency_ms)
    env = worker_env(script, plan.partitions)
    procs = [
        spawn(worker_cmd(settings), plan.out / f"worker-{i}.log", env) for i in range(plan.workers)
    ]
    try:
        target = await ready_target(settings, procs, plan.partitions)
        pids = {f"worker{i}" if i else "worker": p.pid for i, p in enumerate(procs)}
        meters = Meters.of(pids, settings.kafka.bootstrap_servers)
        results = {"pipeline": await _characterize(target, plan, meters, progress)}
        results["pipeline_model_latency"] = await _model_latency(target, plan, meters)
        return results
    finally:
        for proc in procs:
            stop(proc)


async def _characterize(
    target: Target, plan: BenchPlan, meters: Meters, progress: Progress
) -> dict[str, Any]:
    """Warm up, find the sustainable rate, then latency at the common rate."""
    await run_load(target, rate=min(plan.sweep.grid), seconds=plan.warm_up_s, drain_s=20)

    async def measure(rate: float) -> dict[str, Any]:
        return await measure_step(target, plan.sweep, meters, rate)

    found = await find_sustainable(measure, plan.sweep, progress)
    return found | await latency_runs(measure, plan.sweep, plan.sweep.latency_rate)


async def _model_latency(target: Target, plan: BenchPlan, meters: Meters) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]

    def slow(i: int) -> str:
        return f"[[script:{SLOW_KEY}]] What is the capital of country number {i} ({run})?"

    async def measure(rate: float) -> dict[str, Any]:
        return await measure_step(target, plan.sweep, meters, rate, slow)

    runs = await latency_runs(measure, plan.sweep, plan.model_latency_rate)
    return {"model_latency_ms": plan.model_latency_ms, **runs}


def ratios(pipeline: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Pipeline over baseline: sustainable rate, and the worst run's latency and the mean
    CPU per request at the common rate."""
    base_rate = baseline["sustainable_rate"]
    out: dict[str, Any] = {
        "throughput": round(pipeline["sustainable_rate"] / base_rate, 3) if base_rate else None,
        "throughput_limited_by": {
            "pipeline": pipeline["limited_by"],
            "baseline": baseline["limited_by"],
        },
    }
    for pct in ("p50", "p99"):
        mine, theirs = worst(pipeline)["latency_ms"][pct], worst(baseline)["latency_ms"][pct]
        out[f"{pct}_latency_worst_run"] = round(mine / theirs, 2) if theirs else None
    mine_cpu, theirs_cpu = _mean_cpu(pipeline), _mean_cpu(baseline)
    out["cpu_per_request"] = (
        round(mine_cpu / theirs_cpu, 2) if mine_cpu is not None and theirs_cpu else None
    )
    return out


def worst(section: dict[str, Any]) -> dict[str, Any]:
    run: dict[str, Any] = section["runs"][section["worst_run"]]
    return run


def _mean_cpu(section: dict[str, Any]) -> float | None:
    values = [r["cpu_ms_per_request"] for r in section["runs"]]
    if not values or any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


def _create_topics(settings: AppSettings, names: list[str], partitions: int) -> None:
    admin = AdminClient(settings.kafka.confluent())
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions) for n in names])
    for future in futures.values():
        future.result(timeout=30)
