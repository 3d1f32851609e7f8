"""Every worker's load, reported to the system optimizer on a timer.

A report is the difference of the worker's own Prometheus series between two ticks
(stage times, slot waits per lane, model calls per deployment, responses), plus what is
true at the tick (the backlog per topic, slots, breakers, the tuned keys' live values).
Nothing is counted twice on the hot path: the series are there already.
"""

from __future__ import annotations

import math
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry

from agents.capacity import TUNED_KEYS
from agents.config import PipelineConfig
from agents.config_values import encode, value_of
from agents.ids import stable_id
from schemas.network_events import DeploymentLoad, LaneLoad, StageTime, WorkerLoadReported
from schemas.topics import qualified
from streams import background, monitor
from streams.lanes import LANES
from streams.runtime import Runtime
from streams.specialist import Answering

Totals = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""(sample name, sorted labels) -> value."""
_SERIES = (
    "guardian_stage_duration_seconds",
    "guardian_specialist_lane_wait_seconds",
    "guardian_specialist_model_call_seconds",
    "guardian_specialist_model_calls_total",
    "guardian_end_to_end_seconds",
    "guardian_refine_rounds",
)


def totals(registry: CollectorRegistry) -> Totals:
    """The current values of the series a report is made of."""
    found: Totals = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(_SERIES):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@dataclass
class Window:
    """One window's differences, read by sample name and label."""

    delta: Totals

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (sample, labels), value in self.delta.items():
            if sample == name:
                out[dict(labels).get(label, "")] += value
        return out

    def total(self, name: str) -> float:
        return sum(v for (sample, _), v in self.delta.items() if sample == name)

    def quantile(self, histogram: str, q: float) -> float:
        """The upper bound of the bucket the ``q`` quantile falls in (0 without samples;
        the largest finite bound when it falls in the last)."""
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (sample, labels), value in self.delta.items()
            if sample == f"{histogram}_bucket"
        )
        if not buckets or buckets[-1][1] <= 0:
            return 0.0
        wanted = q * buckets[-1][1]
        finite = [b for b, _ in buckets if math.isfinite(b)]
        for bound, cumulative in buckets:
            if cumulative >= wanted:
                return bound if math.isfinite(bound) else (finite[-1] if finite else 0.0)
        return finite[-1] if finite else 0.0


def difference(now: Totals, before: Totals) -> Window:
    return Window({k: v - before.get(k, 0.0) for k, v in now.items()})


def _mean_ms(sums: dict[str, float], counts: dict[str, float], key: str) -> float:
    n = counts.get(key, 0.0)
    return 1000 * sums.get(key, 0.0) / n if n else 0.0


@dataclass
class LoadState:
    """What the reporter keeps between ticks."""

    started: datetime
    totals: Totals = field(default_factory=dict)


def worker_name(rt: Runtime) -> str:
    return rt.settings.worker.instance_id or f"{socket.gethostname()}-{os.getpid()}"


def build_report(
    *,
    worker: str,
    start: datetime,
    end: datetime,
    window: Window,
    answering: Answering,
    lag: dict[str, int],
    lane_topics: Iterable[tuple[str, str]],
    breakers: Mapping[str, str],
    config: PipelineConfig,
    partitions: int,
) -> WorkerLoadReported:
    """A report of one window (``lag`` by qualified topic; ``lane_topics`` (lane, topic))."""
    seconds = max(1e-3, (end - start).total_seconds())
    stage_sum = window.by("guardian_stage_duration_seconds_sum", "stage")
    stage_n = window.by("guardian_stage_duration_seconds_count", "stage")
    wait_sum = window.by("guardian_specialist_lane_wait_seconds_sum", "lane")
    wait_n = window.by("guardian_specialist_lane_wait_seconds_count", "lane")
    call_sum = window.by("guardian_specialist_model_call_seconds_sum", "model")
    call_n = window.by("guardian_specialist_model_call_seconds_count", "model")
    errors: dict[str, float] = defaultdict(float)
    for (sample, labels), value in window.delta.items():
        tags = dict(labels)
        if sample == "guardian_specialist_model_calls_total" and tags.get("outcome") != "ok":
            errors[tags.get("model", "")] += value
    pool = answering.pool
    responses = window.total("guardian_end_to_end_seconds_count")
    rounds_n = window.total("guardian_refine_rounds_count")
    deployments = sorted(set(call_n) | set(errors) | set(breakers))
    return WorkerLoadReported(
        event_id=stable_id("load", worker, end.isoformat()),
        request_id=worker,
        occurred_at=end,
        config_version=config.version,
        worker=worker,
        window_start=start,
        window_end=end,
        slots=pool.size,
        slots_ceiling=answering.ceiling,
        busy_share=round(min(1.0, sum(call_sum.values()) / (pool.size * seconds)), 6),
        guard_every=answering.guard_every,
        partitions=partitions,
        lanes=tuple(
            LaneLoad(
                lane=lane,
                lag=lag.get(topic, 0),
                granted=int(wait_n.get(lane, 0)),
                wait_ms=round(_mean_ms(wait_sum, wait_n, lane), 3),
            )
            for lane, topic in lane_topics
        ),
        deployments=tuple(
            DeploymentLoad(
                deployment=d,
                calls=int(call_n.get(d, 0)),
                errors=int(errors.get(d, 0)),
                mean_latency_ms=round(_mean_ms(call_sum, call_n, d), 3),
                breaker=breakers.get(d, "closed"),
            )
            for d in deployments
            if d != "none"
        ),
        stages=tuple(
            StageTime(stage=s, events=int(n), mean_ms=round(_mean_ms(stage_sum, stage_n, s), 3))
            for s, n in sorted(stage_n.items())
            if n > 0
        ),
        lag=dict(sorted(lag.items())),
        responses=int(responses),
        p95_latency_ms=1000 * window.quantile("guardian_end_to_end_seconds", 0.95),
        mean_rounds=round(window.total("guardian_refine_rounds_sum") / rounds_n, 4)
        if rounds_n
        else 0.0,
        applied={key: encode(value_of(config, key)) for key in TUNED_KEYS},
    )


def register(rt: Runtime, answering: Answering) -> None:
    """The timer that reports this worker's load every ``network.load_report_s``."""
    state = LoadState(started=rt.clock(), totals=totals(rt.metrics.registry))
    name = worker_name(rt)
    namespace = rt.settings.kafka.topic_namespace
    lane_topics = [(lane, qualified(spec, namespace)) for lane, spec in LANES]

    @background.timer(rt, rt.settings.network.load_report_s, "load_report")
    async def load_report() -> None:
        await report_load(rt, answering, state, name, lane_topics)


async def report_load(
    rt: Runtime,
    answering: Answering,
    state: LoadState,
    name: str,
    lane_topics: list[tuple[str, str]],
) -> WorkerLoadReported:
    now, current = rt.clock(), totals(rt.metrics.registry)
    lag = await monitor.record_backlog(rt)
    breakers = {h.deployment: h.breaker for h in rt.ports.llm.health()}
    report = build_report(
        worker=name,
        start=state.started,
        end=now,
        window=difference(current, state.totals),
        answering=answering,
        lag=lag,
        lane_topics=lane_topics,
        breakers=breakers,
        config=rt.config,
        partitions=rt.partitions,
    )
    await rt.emit(report)
    state.started, state.totals = now, current
    return report
