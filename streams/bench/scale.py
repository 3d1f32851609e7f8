"""``guardian bench scale``: scale-out with the model as the bottleneck. A backlog of
requests whose model call takes a fixed time (200 ms) is drained by 1, 2 and 3 worker
processes with the same model-call slots each, and by one worker holding as many
slots as the largest group together: the throughput that grows with the workers, not
with the slots, is scaling. Each configuration runs in a namespace of its own.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.bench.loadgen import run_load
from streams.bench.namespace import scratch_namespace
from streams.bench.procs import ready_target, spawn, stop
from streams.bench.workers import SLOW_KEY, worker_cmd, worker_env, write_script
from streams.settings import AppSettings

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScalePlan:
    out: Path
    workers: tuple[int, ...] = (1, 2, 3)
    slots: int = 4
    """Model calls at once per worker (GUARDIAN_WORKER_SPECIALIST_CONCURRENCY)."""
    model_latency_ms: float = 200.0
    backlog: int = 300
    """Requests sent at ``burst_rate``: faster than any configuration drains them."""
    burst_rate: float = 300.0
    partitions: int = 6
    drain_s: float = 180.0
    repetitions: int = 2
    """Runs per configuration, each with fresh workers; every run is listed and the
    median throughput is the configuration's."""


def configurations(plan: ScalePlan) -> list[tuple[int, int]]:
    """(workers, slots each): each worker count with the same slots, then one worker with
    the slots of the largest group."""
    most = max(plan.workers)
    return [(n, plan.slots) for n in plan.workers] + [(1, plan.slots * most)]


async def run_scale(settings: AppSettings, plan: ScalePlan, progress: Progress) -> dict[str, Any]:
    runs = []
    for workers, slots in configurations(plan):
        repeats = []
        for rep in range(plan.repetitions):
            progress(f"{workers} worker(s) x {slots} slots, run {rep + 1}")
            run = await _drain(settings, plan, workers, slots, rep)
            progress(
                f"  {run['received']}/{run['sent']} answered in {run['drained_s']:.1f} s: "
                f"{run['throughput']:.1f} req/s (model-bound capacity {run['capacity']:.0f})"
            )
            repeats.append(run)
        throughputs = [r["throughput"] for r in repeats]
        runs.append(
            {
                "workers": workers,
                "slots": slots,
                "capacity": repeats[0]["capacity"],
                "throughput": statistics.median(throughputs),
                "drained_s": statistics.median(r["drained_s"] for r in repeats),
                "sent": repeats[0]["sent"],
                "received": min(r["received"] for r in repeats),
                "repeats": repeats,
            }
        )
    single = runs[0]["throughput"]
    for run in runs:
        run["speedup"] = round(run["throughput"] / single, 2) if single else None
    return {"plan": asdict(plan) | {"out": str(plan.out)}, "runs": runs}


async def _drain(
    settings: AppSettings, plan: ScalePlan, workers: int, slots: int, rep: int
) -> dict[str, Any]:
    with scratch_namespace(settings, "scale", plan.partitions) as scoped:
        name = f"scale-{workers}x{slots}-run{rep + 1}"
        script = write_script(plan.out, plan.model_latency_ms, name=name)
        env = worker_env(script, plan.partitions, GUARDIAN_WORKER_SPECIALIST_CONCURRENCY=str(slots))
        procs = [
            spawn(worker_cmd(scoped), plan.out / f"{name}-{i}.log", env) for i in range(workers)
        ]
        try:
            target = await ready_target(scoped, procs, plan.partitions)
            run_id = uuid.uuid4().hex[:8]

            def slow(i: int) -> str:
                return f"[[script:{SLOW_KEY}]] What is the capital of country {i} ({run_id})?"

            result = await run_load(
                target,
                rate=plan.burst_rate,
                seconds=plan.backlog / plan.burst_rate,
                drain_s=plan.drain_s,
                prompt=slow,
            )
        finally:
            for proc in procs:
                stop(proc)
    lat = result.latencies.summary_ms()
    return {
        "workers": workers,
        "slots": slots,
        "capacity": workers * slots / (plan.model_latency_ms / 1000),
        "sent": result.sent,
        "received": result.received,
        "drained_s": round(result.elapsed_seconds, 2),
        "throughput": round(result.throughput, 1),
        "latency_ms": {k: round(v, 1) for k, v in lat.items()},
    }
