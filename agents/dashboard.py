"""What the live dashboard shows, folded from the topics' events as they arrive: request
and outcome rates, rounds, latency percentiles over time, open alerts, the live config
version, experiments and the last failing verdicts. Time is passed in; memory is
bounded (a fixed number of time buckets, a fixed number of recent items)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from agents.config_values import ConfigValueError, config_of
from agents.stats import percentile
from schemas.network_events import AlertRaised, ConfigChanged, ExperimentConcluded
from schemas.request_events import ResponseDelivered, VerdictIssued

STATUSES = ("passed", "failed", "rejected", "timeout", "error")


@dataclass
class _Bucket:
    start: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Board:
    bucket_s: float = 5.0
    buckets: int = 180
    """How much history the charts hold: ``buckets * bucket_s`` seconds (15 minutes)."""
    recent: int = 20
    samples_per_bucket: int = 2000
    """Latencies kept per bucket for its percentiles (the first ones, past that)."""
    totals: Counter[str] = field(default_factory=Counter)
    rounds: Counter[int] = field(default_factory=Counter)
    series: deque[_Bucket] = field(default_factory=deque)
    failing: deque[dict[str, Any]] = field(default_factory=deque)
    alerts: dict[str, AlertRaised] = field(default_factory=dict)
    config: ConfigChanged | None = None
    experiments: deque[ExperimentConcluded] = field(default_factory=deque)

    def response(self, r: ResponseDelivered, now: float) -> None:
        if not r.is_final:
            return
        self.totals[r.status] += 1
        if r.rounds:
            self.rounds[r.rounds] += 1
        bucket = self._bucket(now)
        bucket.statuses[r.status] += 1
        if len(bucket.latencies_ms) < self.samples_per_bucket:
            bucket.latencies_ms.append(r.latency_ms)

    def verdict(self, v: VerdictIssued) -> None:
        if v.passed:
            return
        self.failing.appendleft(
            {
                "request_id": v.request_id,
                "at": v.occurred_at.isoformat(),
                "subtask": v.subtask,
                "round": v.round,
                "score": round(v.score, 3),
                "specialist": v.specialist,
                "failures": list(v.failure_classes),
                "critique": v.critique,
            }
        )
        while len(self.failing) > self.recent:
            self.failing.pop()

    def alert(self, a: AlertRaised) -> None:
        """The latest state of each alert: firing ones are open, resolved ones leave."""
        if a.state == "firing":
            self.alerts[a.alert_id] = a
        else:
            self.alerts.pop(a.alert_id, None)

    def config_changed(self, c: ConfigChanged) -> None:
        if self.config is None or c.version >= self.config.version:
            self.config = c

    def experiment(self, e: ExperimentConcluded) -> None:
        self.experiments.appendleft(e)
        while len(self.experiments) > self.recent:
            self.experiments.pop()

    def _bucket(self, now: float) -> _Bucket:
        start = now - now % self.bucket_s
        if not self.series or self.series[-1].start < start:
            self.series.append(_Bucket(start))
        while len(self.series) > self.buckets:
            self.series.popleft()
        return self.series[-1]

    def snapshot(self, now: float) -> dict[str, Any]:
        """The dashboard's JSON."""
        answered = sum(self.totals.values())
        minute = [b for b in self.series if b.start > now - 60]
        last_minute = sum(sum(b.statuses.values()) for b in minute)
        return {
            "totals": {"requests": answered} | {s: self.totals[s] for s in STATUSES},
            "shares": {s: (self.totals[s] / answered if answered else 0.0) for s in STATUSES},
            "rate_per_s": round(last_minute / 60, 3),
            "rounds": {str(k): v for k, v in sorted(self.rounds.items())},
            "series": self._series(now),
            "alerts": [_alert(a) for a in self.alerts.values()],
            "config": _config(self.config),
            "experiments": {
                "running": _running(self.config),
                "concluded": [_concluded(e) for e in self.experiments],
            },
            "failing": list(self.failing),
        }

    def _series(self, now: float) -> dict[str, list[Any]]:
        """One point per bucket from the first one held to now, idle buckets as zero
        requests and no latency, so the time axis is continuous."""
        held = {b.start: b for b in self.series}
        if not held:
            return {"t": [], "per_s": [], "p50_ms": [], "p99_ms": []}
        last = now - now % self.bucket_s
        first = max(min(held), last - (self.buckets - 1) * self.bucket_s)
        count = round((last - first) / self.bucket_s) + 1
        starts = [first + i * self.bucket_s for i in range(count)]
        buckets = [held.get(t) or _Bucket(t) for t in starts]
        return {
            "t": starts,
            "per_s": [round(sum(b.statuses.values()) / self.bucket_s, 3) for b in buckets],
            "p50_ms": [percentile(b.latencies_ms, 50) for b in buckets],
            "p99_ms": [percentile(b.latencies_ms, 99) for b in buckets],
        }


def _alert(a: AlertRaised) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "rule": a.rule,
        "severity": a.severity,
        "subject": a.subject,
        "message": a.message,
        "since": a.started_at.isoformat(),
    }


def _config(c: ConfigChanged | None) -> dict[str, Any]:
    if c is None:
        return {"version": 0, "changed_by": None, "at": None, "reason": ""}
    return {
        "version": c.version,
        "changed_by": c.changed_by,
        "at": c.occurred_at.isoformat(),
        "reason": c.reason,
    }


def _running(c: ConfigChanged | None) -> list[dict[str, Any]]:
    """The experiment the live config runs, if any."""
    if c is None:
        return []
    try:
        experiment = config_of(c).experiment
    except ConfigValueError:
        return []
    if not experiment.id:
        return []
    return [
        {
            "experiment_id": experiment.id,
            "key": experiment.key,
            "value": experiment.value,
            "share": experiment.share,
        }
    ]


def _concluded(e: ExperimentConcluded) -> dict[str, Any]:
    return {
        "experiment_id": e.experiment_id,
        "decision": e.decision,
        "effect_size": round(e.effect_size, 3),
        "at": e.occurred_at.isoformat(),
    }
