"""An open-loop HTTP load generator for any OpenAI-compatible chat completions endpoint,
and the search for the rate an endpoint sustains.

Requests go out on a fixed schedule whatever the endpoint does, and latency counts from
each request's intended send time, so a queue (in the endpoint or in the connection pool)
shows as latency instead of slowing the load down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import aiohttp

from streams.bench.loadgen import QUARTERS, Latencies
from streams.bench.search import Bracket, converged, next_probe, sweep_rates

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    """Where chat completions are asked for: ``base_url`` ends in ``/v1``."""

    base_url: str
    api_key: str
    model: str

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"


def schedule(rate: float, seconds: float) -> list[float]:
    """Intended send times, in seconds from the start: ``rate`` a second for ``seconds``,
    evenly spaced."""
    if rate <= 0 or seconds <= 0:
        raise ValueError(f"rate and seconds must be positive, got {rate} and {seconds}")
    count = math.floor(rate * seconds + 1e-9)  # 0.1 * 30 is 3, not 2.9999
    return [i / rate for i in range(count)]


def pool_size(rate: float, *, in_flight_s: float = 0.5, floor: int = 16, cap: int = 2048) -> int:
    """Connections for ``rate``: by Little's law, enough for requests of ``in_flight_s``
    to be in flight at once. Past that, requests wait for a connection, and since latency
    counts from the intended send time that wait is measured, not hidden."""
    return max(floor, min(cap, math.ceil(rate * in_flight_s)))


def kept_schedule(sent: int, rate: float, send_seconds: float) -> bool:
    """Whether the generator sent its last request close to its due time (5% and 0.25 s
    of slack): if not, the run measured the generator, not the endpoint."""
    due = (sent - 1) / rate if sent else 0.0
    return send_seconds <= due * 1.05 + 0.25


@dataclass
class Tally:
    """Outcomes of a run's requests, filled in as answers arrive."""

    latencies: Latencies = field(default_factory=Latencies)
    ok: int = 0
    timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_ok: float = 0.0
    """``perf_counter`` of the last successful answer."""
    by_quarter: dict[int, Latencies] = field(default_factory=lambda: defaultdict(Latencies))
    """The same latencies split by quarter of the send schedule (0 first)."""

    def answered(self, due: float, quarter: int) -> None:
        self.last_ok = time.perf_counter()
        self.latencies.record(self.last_ok - due)
        self.by_quarter[quarter].record(self.last_ok - due)
        self.ok += 1


@dataclass
class HttpRunResult:
    """One run at one rate: what was sent, when, and how it was answered."""

    rate: float
    seconds: float
    sent: int
    send_seconds: float
    span_seconds: float
    """From the start of the schedule to the last successful answer."""
    pool: int
    tally: Tally

    @property
    def errors(self) -> int:
        return sum(self.tally.errors.values())

    @property
    def throughput(self) -> float:
        """Successful answers a second, over the schedule or longer if answers lagged."""
        return self.tally.ok / max(self.seconds, self.span_seconds)

    @property
    def kept_schedule(self) -> bool:
        return kept_schedule(self.sent, self.rate, self.send_seconds)

    @cached_property
    def latency_ms(self) -> dict[str, float]:
        """Percentiles of the ok answers' latencies, once the run is over (empty if none)."""
        summary = self.tally.latencies.summary_ms() if self.tally.ok else {}
        return {k: round(v, 3) for k, v in summary.items()}

    def p99_ms(self) -> float:
        return self.latency_ms.get("p99", math.inf)

    @property
    def latency_growth_ms(self) -> float | None:
        """Median latency of the schedule's last quarter minus its first: a queue that
        grows during the run shows here while p99 may still be within its bound."""
        first, last = self.tally.by_quarter.get(0), self.tally.by_quarter.get(QUARTERS - 1)
        if first is None or last is None:
            return None
        return round((_median_us(last) - _median_us(first)) / 1000, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "ok": self.tally.ok,
            "errors": self.errors,
            "error_kinds": dict(self.tally.errors),
            "timeouts": self.tally.timeouts,
            "throughput": round(self.throughput, 1),
            "latency_ms": self.latency_ms,
            "latency_growth_ms": self.latency_growth_ms,
            "generator_kept_schedule": self.kept_schedule,
            "pool": self.pool,
        }


async def run_http_load(
    endpoint: Endpoint, *, rate: float, seconds: float, timeout_s: float = 30.0
) -> HttpRunResult:
    """Ask ``endpoint`` for ``rate`` chat completions a second for ``seconds``, each
    prompt distinct; wait for every answer (``timeout_s`` at most each). An answer counts
    as ok when its status is 200 and its body carries ``choices``."""
    offsets = schedule(rate, seconds)
    run = uuid.uuid4().hex[:8]  # prompts never repeat, so no cache can answer them
    headers = {"Authorization": f"Bearer {endpoint.api_key}", "Content-Type": "application/json"}
    pool = pool_size(rate)
    connector = aiohttp.TCPConnector(limit=pool, limit_per_host=pool)
    tally = Tally()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), headers=headers
    ) as session:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i, offset in enumerate(offsets):
            due = start + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule itself: open-loop pacing
            body = _body(endpoint.model, f"Say hello to request {i} of run {run}.")
            quarter = i * QUARTERS // len(offsets)
            task = asyncio.create_task(_ask(session, endpoint.url, body, (due, quarter), tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        send_seconds = time.perf_counter() - start
        await asyncio.gather(*tasks)
    span = tally.last_ok - start if tally.ok else 0.0
    return HttpRunResult(rate, seconds, len(offsets), send_seconds, span, pool, tally)


def _body(model: str, prompt: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]}).encode()


async def _ask(
    session: aiohttp.ClientSession, url: str, body: bytes, slot: tuple[float, int], tally: Tally
) -> None:
    try:
        async with session.post(url, data=body) as response:
            payload = await response.read()
    except TimeoutError:  # aiohttp's own timeouts subclass it
        tally.timeouts += 1
        return
    except aiohttp.ClientError as exc:
        tally.errors[type(exc).__name__] += 1
        return
    if response.status == 200 and b'"choices"' in payload:
        tally.answered(*slot)
    else:
        tally.errors[f"http_{response.status}"] += 1


@dataclass(frozen=True)
class SustainRule:
    """A rate is sustained when successful answers came at ``min_ratio`` of the offered
    rate or more (errors, timeouts and a backlog that drains late all pull the achieved
    rate down), the p99 latency from intended send stayed within ``p99_bound_ms``, and
    the median latency of the schedule's last quarter exceeded its first quarter's by at
    most ``growth_bound_ms`` (no queue building up: a 5% overload during a 10 s step
    grows the median by about 400 ms from first quarter to last, which neither of the
    other two tests catches)."""

    min_ratio: float = 0.95
    p99_bound_ms: float = 1000.0
    growth_bound_ms: float = 150.0

    def holds(
        self, offered: float, achieved: float, p99_ms: float, growth_ms: float | None
    ) -> bool:
        return (
            achieved >= self.min_ratio * offered
            and p99_ms <= self.p99_bound_ms
            and (growth_ms is None or growth_ms <= self.growth_bound_ms)
        )


@dataclass(frozen=True)
class SearchPlan:
    grid: tuple[float, ...] = (50, 100, 200, 400, 800)
    cap: float = 10_000
    """The sweep extends the grid geometrically (``factor``) up to this rate (req/s)."""
    factor: float = 2.0
    tolerance: float = 0.1
    """Bisection stops once the lowest failed rate is within this of the highest held."""
    max_probes: int = 6
    rule: SustainRule = field(default_factory=SustainRule)


Measure = Callable[[float], Awaitable[HttpRunResult]]


async def find_sustainable_rate(
    measure: Measure, plan: SearchPlan, progress: Progress = logger.info
) -> dict[str, Any]:
    """Sweep the grid upwards until a rate is not sustained, then bisect between the
    highest rate held and the lowest failed, to within ``plan.tolerance``.

    Sustained (``SustainRule``, by default): ok answers came at 95% of the offered rate or
    more, p99 latency from intended send within 1 s, and the median of the last quarter
    of the schedule within 150 ms of the first quarter's. A step where the generator fell
    behind its schedule ends the search: from there on it would measure the generator
    (``limited_by`` says ``generator``; else ``system``, or ``cap`` if nothing failed)."""
    steps: list[dict[str, Any]] = []
    bracket, limited_by = Bracket(), "cap"
    rates = iter(sweep_rates(list(plan.grid), cap=plan.cap, factor=plan.factor))
    probes = 0
    while (rate := _next_rate(bracket, rates, plan)) is not None and probes < plan.max_probes:
        result = await measure(rate)
        held = plan.rule.holds(rate, result.throughput, result.p99_ms(), result.latency_growth_ms)
        phase = "sweep" if bracket.failed is None else "bisect"
        if phase == "bisect":
            probes += 1
        steps.append(result.as_dict() | {"phase": phase, "held": held})
        progress(f"{phase} {rate:>8.1f} req/s: {brief(result)}, {'held' if held else 'failed'}")
        if not result.kept_schedule:
            limited_by = "generator"
            break
        bracket = bracket.after(rate, kept_up=held)
        limited_by = "system" if bracket.failed is not None else limited_by
    return {
        "steps": steps,
        "sustainable_rate": round(bracket.held, 1),
        "bracket": [bracket.held, bracket.failed],
        "converged": converged(bracket, tolerance=plan.tolerance),
        "limited_by": limited_by,
        "rule": asdict(plan.rule),
    }


def _median_us(latencies: Latencies) -> int:
    return int(latencies.hist.get_value_at_percentile(50))


def _next_rate(bracket: Bracket, sweep: Iterator[float], plan: SearchPlan) -> float | None:
    if bracket.failed is None:
        return next(sweep, None)
    return next_probe(bracket, tolerance=plan.tolerance)


def brief(result: HttpRunResult) -> str:
    """One line for a person watching the run."""
    lat = result.latency_ms
    return (
        f"{result.tally.ok}/{result.sent} ok, {result.errors} errors, "
        f"{result.tally.timeouts} timeouts, {result.throughput:.1f}/s, "
        f"p50 {lat.get('p50', math.nan):.1f} ms, p99 {lat.get('p99', math.nan):.1f} ms, "
        f"growth {_ms(result.latency_growth_ms)}"
        + ("" if result.kept_schedule else ", generator behind schedule")
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
