"""Measuring one system: what counts as holding a rate, and the sweep-then-bisect search
driven by step results (a system of known capacity stands in for the load)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from streams.bench.cpu import CpuMeter, machine_busy_seconds
from streams.bench.sweep import Plan, brief, find_sustainable, kept_up, latency_runs

PLAN = Plan(grid=(100, 200, 400), cap=20_000, tolerance=0.05, max_probes=12)


def step(
    rate: float,
    *,
    received: int = 100,
    p99: float = 50.0,
    growth: float | None = 5.0,
    on_schedule: bool = True,
) -> dict[str, Any]:
    return {
        "rate": rate,
        "sent": 100,
        "received": received,
        "throughput": rate,
        "latency_ms": {"p50": p99 / 2, "p99": p99},
        "latency_growth_ms": growth,
        "cpu_ms_per_request": 1.0,
        "broker_cpu_ms_per_request": 0.5,
        "generator_kept_schedule": on_schedule,
    }


class System:
    """Holds any rate up to ``capacity``; the generator keeps up to ``generator``."""

    def __init__(self, capacity: float, generator: float = 1e9) -> None:
        self.capacity, self.generator = capacity, generator
        self.probed: list[float] = []

    async def measure(self, rate: float) -> dict[str, Any]:
        self.probed.append(rate)
        over = rate > self.capacity
        return step(rate, growth=400.0 if over else 5.0, on_schedule=rate <= self.generator)


@pytest.mark.parametrize(
    "failing",
    [step(100, received=99), step(100, p99=1500.0), step(100, growth=300.0)],
    ids=["lost request", "long tail", "growing queue"],
)
def test_a_step_fails_on_a_lost_request_a_long_tail_or_a_growing_queue(
    failing: dict[str, Any],
) -> None:
    assert kept_up(step(100), PLAN)
    assert not kept_up(failing, PLAN)


def test_a_step_too_short_to_split_in_quarters_is_judged_without_growth() -> None:
    assert kept_up(step(100, growth=None), PLAN)


async def test_the_sweep_goes_past_the_grid_and_bisects_to_the_capacity() -> None:
    system = System(capacity=1234)
    found = await find_sustainable(system.measure, PLAN, lambda _: None)
    assert [s["rate"] for s in found["sweep"]] == [100, 200, 400, 800, 1600]
    assert found["limited_by"] == "system"
    assert found["converged"]
    held, failed = found["bracket"]
    assert held <= 1234 < failed <= held * 1.05
    assert found["sustainable_rate"] == pytest.approx(held, abs=0.1)
    assert len(found["bisection"]) == len(system.probed) - 5


async def test_the_cap_and_the_generator_stop_the_sweep_without_a_bisection() -> None:
    capped = await find_sustainable(System(1e6).measure, PLAN, lambda _: None)
    assert (capped["limited_by"], capped["bracket"]) == ("cap", [20_000, None])
    assert capped["sweep"][-1]["rate"] == 20_000
    slow_generator = await find_sustainable(System(1e6, 5000).measure, PLAN, lambda _: None)
    assert (slow_generator["limited_by"], slow_generator["sustainable_rate"]) == ("generator", 3200)
    assert not slow_generator["bisection"]


async def test_the_bisection_stops_after_its_probe_budget() -> None:
    plan = Plan(grid=(100, 10_000), cap=10_000, max_probes=2)
    found = await find_sustainable(System(1234).measure, plan, lambda _: None)
    assert len(found["bisection"]) == 2
    assert not found["converged"]


async def test_latency_runs_name_the_worst_run() -> None:
    p99s = iter([30.0, 90.0, 60.0])

    async def measure(rate: float) -> dict[str, Any]:
        return step(rate, p99=next(p99s))

    runs = await latency_runs(measure, Plan(repetitions=3), 100)
    assert runs["latency_rate"] == 100
    assert [r["latency_ms"]["p99"] for r in runs["runs"]] == [30, 90, 60]
    assert runs["worst_run"] == 1


def test_a_step_line_says_when_other_processes_kept_the_machine_busy() -> None:
    assert "machine busy" not in brief(step(100))
    assert "machine busy" not in brief(step(100) | {"other_cores": 0.05})
    line = brief(step(100) | {"other_cores": 0.74})
    assert line.endswith("machine busy: other processes used 0.74 cores")


def test_the_cpu_meter_counts_what_other_processes_used() -> None:
    assert machine_busy_seconds() > 0
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # this process busy: none of it counts as another's
        pass
    used = meter.stop()
    assert used["me"] > 0
    assert 0.0 <= meter.others(used) < 2.0
