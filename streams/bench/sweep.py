"""Measuring one system under open-loop load: one step (latency, CPU per answered request,
broker CPU), the sweep and bisection to its sustainable rate, and repeated runs at one
fixed rate for latency."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from connectors import broker
from streams.bench.cpu import CpuMeter, listener_pid, settle
from streams.bench.loadgen import RunResult, Target, run_load
from streams.bench.search import Bracket, converged, next_probe, sweep_rates

Progress = Callable[[str], None]
Measure = Callable[[float], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Plan:
    """How each system is measured."""

    grid: tuple[float, ...] = (100, 200, 400, 700, 1000, 1400)
    cap: float = 20_000
    """The sweep extends the grid geometrically up to this rate (req/s)."""
    factor: float = 2.0
    tolerance: float = 0.05
    max_probes: int = 8
    seconds: float = 8.0
    drain_s: float = 20.0
    p99_bound_ms: float = 1000.0
    growth_bound_ms: float = 150.0
    """A rate holds only if the median latency grew less than this from the first quarter
    of a step to the last: over 8 s, a 5% overload grows a queue of about 300 ms."""
    latency_rate: float = 100.0
    """The one rate, common to every system, at which latency is measured."""
    repetitions: int = 3


@dataclass(frozen=True)
class Meters:
    """The processes whose CPU a step meters: the system under test, and the broker."""

    system: dict[str, int]
    broker: int | None = None

    @classmethod
    def of(cls, system: dict[str, int], bootstrap: str) -> Meters:
        return cls(system, broker_pid(bootstrap))

    def all(self) -> dict[str, int]:
        broker_pids = {} if self.broker is None else {"broker": self.broker}
        return self.system | broker_pids | {"generator": os.getpid()}


async def measure_step(
    target: Target,
    plan: Plan,
    meters: Meters,
    rate: float,
    prompt: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """One open-loop step at ``rate``, once the system is idle: the load's result and the
    CPU it cost."""
    settled = await settle(list(meters.system.values()))
    meter = CpuMeter(meters.all())
    meter.start()
    result = await run_load(
        target, rate=rate, seconds=plan.seconds, drain_s=plan.drain_s, prompt=prompt
    )
    used = meter.stop()
    report = result.as_dict() | _cpu_report(used, meters, result) | _schedule(result)
    return report | {"settle_s": settled, "other_cores": meter.others(used)}


def _cpu_report(used: dict[str, float], meters: Meters, result: RunResult) -> dict[str, Any]:
    system = sum(s for name, s in used.items() if name in meters.system)
    brokers = used.get("broker")
    return {
        "cpu_seconds": used,
        "cpu_ms_per_request": _per_request(system, result.received),
        "broker_cpu_ms_per_request": _per_request(brokers, result.received),
        "broker_cpu_cores": (
            round(brokers / result.elapsed_seconds, 3)
            if brokers is not None and result.elapsed_seconds
            else None
        ),
    }


def _per_request(seconds: float | None, answered: int) -> float | None:
    return round(seconds * 1000 / answered, 3) if seconds is not None and answered else None


def _schedule(result: RunResult) -> dict[str, bool]:
    """Whether the generator sent on schedule: if not, the step measured the generator."""
    due = (result.sent - 1) / result.rate if result.sent else 0.0
    return {"generator_kept_schedule": result.send_seconds <= due * 1.05 + 0.25}


def kept_up(step: dict[str, Any], plan: Plan) -> bool:
    """Every request answered, p99 under its bound, and no queue building up."""
    growth = step["latency_growth_ms"]
    return bool(
        step["received"] == step["sent"]
        and step["latency_ms"]["p99"] <= plan.p99_bound_ms
        and (growth is None or growth <= plan.growth_bound_ms)
    )


async def find_sustainable(measure: Measure, plan: Plan, progress: Progress) -> dict[str, Any]:
    """Sweep until the system fails (or the generator, or the cap, stops the sweep), then
    bisect between the last rate held and the first failed, to within the tolerance."""
    steps, bracket, limited_by = await _sweep(measure, plan, progress)
    probes, bracket = await _bisect(measure, plan, progress, bracket)
    return {
        "sweep": steps,
        "bisection": probes,
        "sustainable_rate": round(bracket.held, 1),
        "bracket": [bracket.held, bracket.failed],
        "converged": converged(bracket, tolerance=plan.tolerance),
        "limited_by": limited_by,
    }


async def _sweep(
    measure: Measure, plan: Plan, progress: Progress
) -> tuple[list[dict[str, Any]], Bracket, str]:
    steps: list[dict[str, Any]] = []
    bracket = Bracket()
    for rate in sweep_rates(list(plan.grid), cap=plan.cap, factor=plan.factor):
        step = await _probe(measure, rate, progress, "sweep")
        steps.append(step)
        if not step["generator_kept_schedule"]:
            return steps, bracket, "generator"
        bracket = bracket.after(rate, kept_up=kept_up(step, plan))
        if bracket.failed is not None:
            return steps, bracket, "system"
    return steps, bracket, "cap"


async def _bisect(
    measure: Measure, plan: Plan, progress: Progress, bracket: Bracket
) -> tuple[list[dict[str, Any]], Bracket]:
    probes: list[dict[str, Any]] = []
    while len(probes) < plan.max_probes:
        rate = next_probe(bracket, tolerance=plan.tolerance)
        if rate is None:
            break
        step = await _probe(measure, rate, progress, "bisect")
        probes.append(step)
        bracket = bracket.after(rate, kept_up=kept_up(step, plan))
    return probes, bracket


async def _probe(measure: Measure, rate: float, progress: Progress, kind: str) -> dict[str, Any]:
    step = await measure(rate)
    progress(f"{kind} {rate:>8.1f} req/s: {brief(step)}")
    return step


async def latency_runs(measure: Measure, plan: Plan, rate: float) -> dict[str, Any]:
    """``repetitions`` runs at ``rate``, every one listed; the worst p99 is the one quoted."""
    runs = [await measure(rate) for _ in range(plan.repetitions)]
    worst = max(range(len(runs)), key=lambda i: runs[i]["latency_ms"]["p99"])
    return {"latency_rate": rate, "runs": runs, "worst_run": worst}


def brief(step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    cpu = step["cpu_ms_per_request"]
    broker_cpu = step["broker_cpu_ms_per_request"]
    return (
        f"{step['received']}/{step['sent']} answered, {step['throughput']}/s, "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"growth {_ms(step['latency_growth_ms'])}, "
        f"cpu {_ms(cpu)}/req, broker {_ms(broker_cpu)}/req"
        + ("" if step["generator_kept_schedule"] else ", generator behind schedule")
        + _busy_machine(step.get("other_cores"))
    )


BUSY_MACHINE_CORES = 0.2
"""Cores other processes may use during a step before its line says so: on two shared
cores, a few tenths of a core elsewhere move the pipeline's sustainable rate by tens of
percent (docs/benchmarks.md)."""


def _busy_machine(cores: float | None) -> str:
    if cores is None or cores < BUSY_MACHINE_CORES:
        return ""
    return f", machine busy: other processes used {cores:.2f} cores"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def broker_pid(bootstrap: str) -> int | None:
    """The local broker's process: the one listening on the bootstrap port on loopback,
    else the project's local broker; None for a remote broker."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host.strip("[]") not in {"127.0.0.1", "localhost", "::1"} or not port.isdigit():
        return None
    return listener_pid(int(port)) or broker.status(broker.BrokerSettings()).pid
