"""``guardian bench soak``: one pipeline worker under a steady open-loop rate for many
requests, its resident memory and refinement-table size sampled as it goes; then the
worker is killed and a new one timed from start to the first answer of a fresh request."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from connectors.client import GuardianClient
from connectors.errors import ResponseTimeoutError
from streams.bench.loadgen import Counts, Target, run_load
from streams.bench.memory import growth_per_10k, rss_mb, scrape
from streams.bench.namespace import scratch_namespace
from streams.bench.procs import free_port, kill, ready_target, spawn, stop
from streams.bench.sweep import Progress
from streams.bench.workers import worker_cmd, worker_env, write_script
from streams.settings import AppSettings

TABLE_METRIC = "guardian_refine_table_entries"


@dataclass(frozen=True)
class SoakPlan:
    out: Path
    requests: int = 100_000
    rate: float = 100.0
    retain_s: float = 30.0
    """The worker's refinement-table retention (``GUARDIAN_REFINE_RETAIN_S``)."""
    partitions: int = 6
    sample_s: float = 1.0
    progress_s: float = 10.0
    warm_up_share: float = 0.1
    """Memory growth is fitted once this share of the requests was answered."""
    drain_s: float = 60.0
    restart_timeout_s: float = 180.0


async def run_soak(settings: AppSettings, plan: SoakPlan, progress: Progress) -> dict[str, Any]:
    script = write_script(plan.out, 0.0, "script-soak")
    with scratch_namespace(settings, "soak", plan.partitions) as scoped:
        namespace = scoped.kafka.topic_namespace
        held = await _first_worker(scoped, plan, script, progress)
        progress("worker killed; starting a new one")
        restart = await _restart(scoped, plan, script)
    samples = [s for s in held["samples"] if s["rss_mb"] is not None]
    growth = growth_per_10k(
        [s["answered"] for s in samples],
        [s["rss_mb"] for s in samples],
        warm_up=int(plan.requests * plan.warm_up_share),
    )
    return {
        "plan": asdict(plan) | {"out": str(plan.out)},
        "namespace": namespace,
        **held,
        "restart": restart,
        "rss_growth_mb_per_10k": None if growth is None else round(growth, 3),
    }


async def _first_worker(
    settings: AppSettings, plan: SoakPlan, script: Path, progress: Progress
) -> dict[str, Any]:
    port = free_port()
    proc = _spawn_worker(settings, plan, script, port, "soak-worker")
    try:
        target = await ready_target(settings, [proc], plan.partitions)
        return await _hold_rate(target, plan, (proc.pid, port), progress)
    finally:
        kill(proc)


async def _hold_rate(
    target: Target, plan: SoakPlan, worker: tuple[int, int], progress: Progress
) -> dict[str, Any]:
    """The load at ``plan.rate``, sampled every ``plan.sample_s`` until it has drained."""
    counts = Counts()
    seconds = (plan.requests + 0.5) / plan.rate  # exactly ``requests`` requests
    load = asyncio.create_task(
        run_load(target, rate=plan.rate, seconds=seconds, drain_s=plan.drain_s, counts=counts)
    )
    started = time.monotonic()
    samples, reported = [], started
    while not load.done():
        samples.append(await _sample(worker, counts, started))
        if time.monotonic() - reported >= plan.progress_s:
            reported = time.monotonic()
            progress(_progress_line(samples[-1], plan.requests))
        await asyncio.wait({load}, timeout=plan.sample_s)
    samples.append(await _sample(worker, counts, started))
    return {"load": load.result().as_dict(), "samples": samples}


async def _sample(worker: tuple[int, int], counts: Counts, started: float) -> dict[str, Any]:
    pid, port = worker
    rss = rss_mb(pid)
    return {
        "t": round(time.monotonic() - started, 2),
        "sent": counts.sent,
        "answered": counts.answered,
        "rss_mb": None if rss is None else round(rss, 2),
        "table_entries": await scrape(port, TABLE_METRIC),
    }


def _progress_line(sample: dict[str, Any], requests: int) -> str:
    table = sample["table_entries"]
    return (
        f"{sample['t']:.0f} s: sent {sample['sent']}/{requests}, answered "
        f"{sample['answered']}, rss {sample['rss_mb']} MB, table entries "
        f"{'n/a' if table is None else int(table)}"
    )


async def _restart(settings: AppSettings, plan: SoakPlan, script: Path) -> dict[str, Any]:
    """Seconds from starting a new worker to the answer of a request sent at its start."""
    started = time.monotonic()
    proc = _spawn_worker(settings, plan, script, free_port(), "soak-restarted-worker")
    try:
        async with GuardianClient(settings.kafka) as client:
            prompt = f"What is the capital of the country after a restart ({uuid.uuid4().hex})?"
            response = await client.ask(prompt, timeout_s=plan.restart_timeout_s)
        elapsed = time.monotonic() - started
        return {"seconds": round(elapsed, 2), "status": response.status, "answered": True}
    except ResponseTimeoutError:
        return {"seconds": None, "status": None, "answered": False}
    finally:
        stop(proc)


def _spawn_worker(
    settings: AppSettings, plan: SoakPlan, script: Path, port: int, name: str
) -> subprocess.Popen[bytes]:
    env = worker_env(
        script,
        plan.partitions,
        GUARDIAN_REFINE_RETAIN_S=f"{plan.retain_s:g}",
        GUARDIAN_WORKER_METRICS_PORT=str(port),
    )
    return spawn(worker_cmd(settings), plan.out / f"{name}.log", env)
