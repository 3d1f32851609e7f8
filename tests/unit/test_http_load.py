"""The HTTP load generator: its schedule, pool and sustained-rate rule, the search driven by
run results (a system of known capacity stands in for the load), and short runs against
real servers on loopback."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from aiohttp import web

from streams.bench.http_load import (
    Endpoint,
    HttpRunResult,
    SearchPlan,
    SustainRule,
    Tally,
    find_sustainable_rate,
    kept_schedule,
    pool_size,
    run_http_load,
    schedule,
)
from streams.chaos.model_server import ModelServer
from tests.loopback import LoopbackServer


@pytest.mark.parametrize(
    ("rate", "seconds", "count", "last"),
    [(50, 10, 500, 9.98), (0.1, 30, 3, 20.0), (3, 1, 3, 2 / 3), (1000, 0.5, 500, 0.499)],
)
def test_the_schedule_spaces_requests_evenly_from_zero(
    rate: float, seconds: float, count: int, last: float
) -> None:
    offsets = schedule(rate, seconds)
    assert len(offsets) == count
    assert offsets[0] == 0.0
    assert offsets[-1] == pytest.approx(last)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {round(1 / rate, 9)}


@pytest.mark.parametrize(("rate", "seconds"), [(0, 10), (-5, 10), (10, 0)])
def test_a_schedule_needs_a_positive_rate_and_length(rate: float, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        schedule(rate, seconds)


@pytest.mark.parametrize(
    ("rate", "size"), [(1, 16), (50, 25), (200, 100), (1000, 500), (100_000, 2048)]
)
def test_the_pool_holds_half_a_second_of_requests_within_bounds(rate: float, size: int) -> None:
    assert pool_size(rate) == size


@pytest.mark.parametrize(
    ("sent", "send_seconds", "kept"),
    [(1000, 9.99, True), (1000, 10.7, True), (1000, 10.8, False), (1, 0.2, True), (0, 0.0, True)],
)
def test_the_generator_kept_its_schedule_within_five_percent_and_a_quarter_second(
    sent: int, send_seconds: float, kept: bool
) -> None:
    assert kept_schedule(sent, 100.0, send_seconds) is kept


RULE = SustainRule(min_ratio=0.95, p99_bound_ms=1000.0, growth_bound_ms=150.0)


@pytest.mark.parametrize(
    ("achieved", "p99_ms", "growth_ms", "holds"),
    [
        (200.0, 20.0, 1.0, True),
        (190.0, 1000.0, 150.0, True),
        (200.0, 20.0, None, True),  # a quarter without answers: the ratio decides
        (189.9, 20.0, 1.0, False),  # answers lag or fail: under 95% of the offered rate
        (200.0, 1000.1, 1.0, False),  # a long tail
        (200.0, 400.0, 150.1, False),  # a queue building up
        (0.0, math.inf, None, False),  # nothing answered
    ],
    ids=["easy", "at every bound", "no growth", "short", "long tail", "queue", "nothing"],
)
def test_a_rate_holds_at_95_percent_achieved_p99_within_bound_and_no_queue(
    achieved: float, p99_ms: float, growth_ms: float | None, holds: bool
) -> None:
    assert RULE.holds(200.0, achieved, p99_ms, growth_ms) is holds


def result(
    rate: float,
    *,
    ok: int,
    p99_s: float = 0.01,
    growth_s: float = 0.0,
    span: float = 0.0,
    send_s: float | None = None,
) -> HttpRunResult:
    """A run whose ok answers all took ``p99_s``, but ``growth_s`` more in its last quarter."""
    tally = Tally(ok=ok)
    tally.latencies.hist.record_value(int(p99_s * 1_000_000), ok)
    tally.by_quarter[0].record(p99_s)
    tally.by_quarter[3].record(p99_s + growth_s)
    sent = round(rate * 10)
    send_seconds = (sent - 1) / rate if send_s is None else send_s
    return HttpRunResult(rate, 10.0, sent, send_seconds, span, pool_size(rate), tally)


def test_throughput_counts_ok_answers_over_the_schedule_or_the_longer_span() -> None:
    assert result(100, ok=1000, span=10.01).throughput == pytest.approx(1000 / 10.01)
    assert result(100, ok=1000, span=4.0).throughput == 100.0
    assert result(100, ok=1000, span=20.0).throughput == 50.0  # a backlog drained late


def test_growth_is_the_last_quarters_median_minus_the_firsts() -> None:
    assert result(100, ok=10, p99_s=0.02, growth_s=0.3).latency_growth_ms == pytest.approx(
        300.0, rel=1e-3
    )
    assert HttpRunResult(100, 10.0, 0, 0.0, 0.0, 16, Tally()).latency_growth_ms is None


class System:
    """Answers every request in 10 ms up to ``capacity`` req/s; past it, at ``capacity``
    with a queue that grows (so a slight overload fails on growth alone). The generator
    keeps up to ``generator`` req/s."""

    def __init__(self, capacity: float, generator: float = 1e9) -> None:
        self.capacity, self.generator = capacity, generator
        self.probed: list[float] = []

    async def measure(self, rate: float) -> HttpRunResult:
        self.probed.append(rate)
        send_s = None if rate <= self.generator else 20.0
        sent = round(rate * 10)
        if rate <= self.capacity:
            return result(rate, ok=sent, span=10.01, send_s=send_s)
        span = sent / self.capacity
        return result(rate, ok=sent, p99_s=0.5, growth_s=0.4, span=span, send_s=send_s)


PLAN = SearchPlan(grid=(50, 100, 200, 400), cap=5000, tolerance=0.1, max_probes=10)


@pytest.mark.parametrize("capacity", [73.0, 260.0, 1234.0])
async def test_the_search_brackets_the_capacity_within_the_tolerance(capacity: float) -> None:
    system = System(capacity)
    found = await find_sustainable_rate(system.measure, PLAN, lambda _: None)
    held, failed = found["bracket"]
    assert held <= capacity < failed <= held * 1.1
    assert found["converged"]
    assert found["limited_by"] == "system"
    assert found["sustainable_rate"] == round(held, 1)
    assert [s["rate"] for s in found["steps"]] == system.probed
    assert {s["phase"] for s in found["steps"]} == {"sweep", "bisect"}
    assert found["rule"] == {"min_ratio": 0.95, "p99_bound_ms": 1000.0, "growth_bound_ms": 150.0}


async def test_the_sweep_goes_past_the_grid_up_to_the_cap() -> None:
    system = System(capacity=1e9)
    found = await find_sustainable_rate(system.measure, PLAN, lambda _: None)
    assert system.probed == [50, 100, 200, 400, 800, 1600, 3200, 5000]
    assert found["limited_by"] == "cap"
    assert found["sustainable_rate"] == 5000
    assert not found["converged"]


async def test_a_generator_behind_schedule_ends_the_search() -> None:
    system = System(capacity=1e9, generator=300)
    found = await find_sustainable_rate(system.measure, PLAN, lambda _: None)
    assert system.probed == [50, 100, 200, 400]
    assert found["limited_by"] == "generator"
    assert found["sustainable_rate"] == 200
    assert found["steps"][-1]["generator_kept_schedule"] is False


async def test_bisection_stops_at_max_probes() -> None:
    system = System(capacity=777.0)
    plan = SearchPlan(grid=(50,), cap=5000, tolerance=0.001, max_probes=3)
    found = await find_sustainable_rate(system.measure, plan, lambda _: None)
    assert [s["phase"] for s in found["steps"]].count("bisect") == 3
    assert not found["converged"]


async def test_a_run_against_a_model_on_loopback_answers_every_request() -> None:
    async with ModelServer(latency_s=0.0) as model:
        endpoint = Endpoint(model.base_url, "sk-test", "chaos-model")
        run = await run_http_load(endpoint, rate=100, seconds=0.3)
    assert (run.sent, run.tally.ok, run.errors, run.tally.timeouts) == (30, 30, 0, 0)
    assert model.calls == 30
    assert run.as_dict()["latency_ms"]["p50"] > 0


async def test_errors_and_timeouts_are_counted_apart_and_not_as_latency() -> None:
    calls = 0

    async def chat(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            await asyncio.sleep(3.0)  # far past the client's timeout
        if calls % 3 == 1:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return web.json_response({"choices": [{"message": {"content": "hi"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with LoopbackServer(app) as server:
        endpoint = Endpoint(f"{server.origin}/v1", "sk-test", "m")
        # A second for the quick answers: a loaded machine must not turn them into timeouts.
        run = await run_http_load(endpoint, rate=50, seconds=0.18, timeout_s=1.0)
    assert run.sent == 9
    assert (run.tally.ok, run.tally.errors, run.tally.timeouts) == (3, {"http_503": 3}, 3)
    assert run.tally.latencies.hist.get_total_count() == 3
    assert run.as_dict()["error_kinds"] == {"http_503": 3}
