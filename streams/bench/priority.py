"""``guardian bench priority``: one worker at saturation, a fixed-latency model and a mix
of priorities; latency per priority lane.

The model's slots are the bottleneck by construction: ``slots`` concurrent calls of
``model_latency_ms`` each serve ``slots / latency`` tasks per second, and the load is
``overload`` times that, open loop, for ``seconds``; every request is one round, so one
task. The backlog grows during the run and drains after it. With ``compare`` the same
load runs again with a single lane (every task in one FIFO topic) for reference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.priority import lane_for, lane_name
from streams.bench.loadgen import Latencies, RunResult, run_load
from streams.bench.namespace import scratch_namespace
from streams.bench.procs import ready_target, spawn, stop
from streams.bench.workers import worker_cmd, worker_env
from streams.settings import AppSettings

DEFAULT_MIX = "9:0.2,5:0.3,1:0.5"
LANE_ORDER = ("high", "normal", "low")


@dataclass(frozen=True)
class Plan:
    slots: int = 2
    model_latency_ms: float = 100.0
    overload: float = 1.5
    seconds: float = 15.0
    mix: tuple[tuple[int, float], ...] = ((9, 0.2), (5, 0.3), (1, 0.5))
    partitions: int = 6
    compare: bool = False

    @property
    def capacity(self) -> float:
        """Tasks per second the model's slots can serve."""
        return self.slots * 1000.0 / self.model_latency_ms

    @property
    def rate(self) -> float:
        return self.overload * self.capacity

    @property
    def drain_s(self) -> float:
        """Time allowed after sending: twice the backlog's drain time, plus slack."""
        backlog_s = self.rate * self.seconds / self.capacity - self.seconds
        return max(20.0, 2 * backlog_s + 10.0)


def parse_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``9:0.2,5:0.3,1:0.5`` -> ((9, 0.2), (5, 0.3), (1, 0.5)): priority and share."""
    mix = []
    for item in text.split(","):
        level, _, share = item.strip().partition(":")
        mix.append((int(level), float(share)))
    if not mix or any(not 0 <= p <= 9 or s <= 0 for p, s in mix):
        raise ValueError(f"bad mix {text!r}: want priority:share items, priority 0-9, share > 0")
    return tuple(mix)


def priorities(mix: tuple[tuple[int, float], ...], total: int, seed: int = 0) -> list[int]:
    """The priority of each of ``total`` requests, drawn by share (seeded: runs compare)."""
    rng = random.Random(seed)
    return rng.choices([p for p, _ in mix], [s for _, s in mix], k=total)


async def run_priority_bench(
    settings: AppSettings, plan: Plan, out: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": asdict(plan) | {"rate": plan.rate}, "runs": {}}
    for lanes in (3, 1) if plan.compare else (3,):
        progress(f"{lanes} lane(s): {plan.rate:.0f} req/s for {plan.seconds:.0f} s")
        results["runs"][f"{lanes}_lanes"] = await _run(settings, plan, out, lanes)
    return results


async def _run(settings: AppSettings, plan: Plan, out: Path, lanes: int) -> dict[str, Any]:
    script = out / f"script-priority-{int(plan.model_latency_ms)}.json"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(json.dumps({"default": {"latency_ms": plan.model_latency_ms}}))
    with scratch_namespace(settings, "benchprio", plan.partitions) as scoped:
        proc = spawn(
            worker_cmd(scoped), out / f"priority-worker-{lanes}.log", _env(plan, script, lanes)
        )
        try:
            target = await ready_target(scoped, [proc], plan.partitions)
            levels = priorities(plan.mix, int(plan.rate * plan.seconds))
            result = await run_load(
                target,
                rate=plan.rate,
                seconds=plan.seconds,
                drain_s=plan.drain_s,
                priority=levels.__getitem__,
            )
            return _report(result, lanes)
        finally:
            stop(proc)


def _env(plan: Plan, script: Path, lanes: int) -> dict[str, str]:
    return worker_env(
        script,
        plan.partitions,
        GUARDIAN_REFINE_MAX_ROUNDS="1",
        GUARDIAN_WORKER_SPECIALIST_CONCURRENCY=str(plan.slots),
        GUARDIAN_WORKER_PRIORITY_LANES=str(lanes),
    )


def _report(result: RunResult, lanes: int) -> dict[str, Any]:
    """The run's totals and latency per lane; requests are grouped by the lane their
    priority has with three lanes, whatever ``lanes`` the worker ran with."""
    merged: dict[str, Latencies] = {}
    for level, latencies in sorted(result.by_priority.items()):
        name = lane_name(lane_for(level))
        merged.setdefault(name, Latencies()).hist.add(latencies.hist)
    by_lane = {
        name: {"requests": merged[name].hist.get_total_count()}
        | {k: round(v, 1) for k, v in merged[name].summary_ms().items()}
        for name in LANE_ORDER
        if name in merged
    }
    return {"lanes": lanes, **result.as_dict(), "by_lane": by_lane}
