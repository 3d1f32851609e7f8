"""The anomaly detector over the network's verdict facts: per specialist and tumbling
window, six metrics (pass rate, mean guardian score, p95 model latency, error rate,
tokens per request, refusal rate), each one a series ``agents.anomaly`` watches. When
a series' incident starts or ends, an ``AnomalyDetected`` and the ``AlertRaised`` of
rule ``anomaly`` go out (once per incident: both ids derive from the metric, the
specialist and the window the incident started in). Pure, in event time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.anomaly import DetectorPolicy, Finding, SeriesState, observe
from agents.diagnosis import aligned
from agents.ids import stable_id
from agents.stats import percentile
from schemas.envelope import Millis
from schemas.network_events import AlertRaised, AnomalyDetected, NetworkFactRecorded

MAX_LATENCIES = 64
"""Latencies kept per specialist and window for its p95 (the first ones, past that): the
state is written with every verdict, so it stays small."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WatchPolicy(_Frozen):
    window: timedelta = timedelta(minutes=5)
    min_samples: int = Field(default=20, ge=1)
    """A specialist's window with fewer verdicts adds no point to its series."""
    detector: DetectorPolicy = DetectorPolicy(history=36)


class Counts(_Frozen):
    """One specialist's verdicts in one window."""

    subject: str
    n: int = 0
    passes: int = 0
    score_sum: float = 0.0
    errors: int = 0
    refusals: int = 0
    tokens: int = 0
    latencies: tuple[float, ...] = ()


class Series(_Frozen):
    metric: str
    subject: str
    state: SeriesState = SeriesState()
    anomaly_id: str = ""
    """The open incident's id ("" when none is open)."""


class WatchState(_Frozen):
    start: Millis | None = None
    """The open window's start."""
    counts: tuple[Counts, ...] = ()
    series: tuple[Series, ...] = ()


METRICS: dict[str, Callable[[Counts], float]] = {
    "pass_rate": lambda c: c.passes / c.n,
    "score": lambda c: c.score_sum / c.n,
    "latency_p95_ms": lambda c: percentile(list(c.latencies), 95) or 0.0,
    "error_rate": lambda c: c.errors / c.n,
    "tokens_per_request": lambda c: c.tokens / c.n,
    "refusal_rate": lambda c: c.refusals / c.n,
}


def count(watch: WatchState, fact: NetworkFactRecorded, policy: WatchPolicy) -> WatchState:
    """Count a verdict fact in the open window (one of an earlier window is late: it is
    dropped, as the window's value is decided)."""
    start = aligned(fact.occurred_at, policy.window)
    if watch.start is not None and start < watch.start:
        return watch
    if watch.start is None or start > watch.start:
        watch = watch.model_copy(update={"start": start, "counts": ()})
    held = next((c for c in watch.counts if c.subject == fact.specialist), None)
    held = _add(held or Counts(subject=fact.specialist), fact)
    others = tuple(c for c in watch.counts if c.subject != fact.specialist)
    return watch.model_copy(update={"counts": (*others, held)})


def _add(c: Counts, fact: NetworkFactRecorded) -> Counts:
    classes = set(fact.failure_classes)
    latencies = c.latencies
    if fact.latency_ms > 0 and len(latencies) < MAX_LATENCIES:
        latencies = (*latencies, fact.latency_ms)
    return c.model_copy(
        update={
            "n": c.n + 1,
            "passes": c.passes + fact.passed,
            "score_sum": c.score_sum + fact.score,
            "errors": c.errors + ("model_error" in classes),
            "refusals": c.refusals + ("refusal" in classes),
            "tokens": c.tokens + fact.tokens,
            "latencies": latencies,
        }
    )


def close_due(
    watch: WatchState, clock: datetime, policy: WatchPolicy, config_version: int = 0
) -> tuple[WatchState, list[AnomalyDetected | AlertRaised]]:
    """Once event time has passed the open window: its values go to their series; the
    incidents that start or end are returned, each as an anomaly and its alert."""
    if watch.start is None or clock < watch.start + policy.window:
        return watch, []
    end = watch.start + policy.window
    series = {(s.metric, s.subject): s for s in watch.series}
    out: list[AnomalyDetected | AlertRaised] = []
    for c in sorted(watch.counts, key=lambda c: c.subject):
        if c.n < policy.min_samples:
            continue
        for metric, value_of in METRICS.items():
            held = series.get((metric, c.subject)) or Series(metric=metric, subject=c.subject)
            held, events = _feed(held, value_of(c), (watch.start, end), c.n, policy)
            series[(metric, c.subject)] = held
            out += [e.model_copy(update={"config_version": config_version}) for e in events]
    kept = tuple(series[k] for k in sorted(series))
    return WatchState(start=None, counts=(), series=kept), out


def _feed(
    s: Series, value: float, window: tuple[datetime, datetime], n: int, policy: WatchPolicy
) -> tuple[Series, list[AnomalyDetected | AlertRaised]]:
    state, finding = observe(s.state, value, policy.detector)
    if finding is not None:
        anomaly_id = stable_id("anomaly", s.metric, s.subject, window[0].isoformat())
        s = s.model_copy(update={"state": state, "anomaly_id": anomaly_id})
        return s, [*_events(s, finding, "firing", window, n)]
    if s.state.open is not None and state.open is None and s.anomaly_id:
        back = Finding(s.state.open, value, value, 0.0)
        events: list[AnomalyDetected | AlertRaised] = [*_events(s, back, "resolved", window, n)]
        return s.model_copy(update={"state": state, "anomaly_id": ""}), events
    return s.model_copy(update={"state": state}), []


def _events(
    s: Series,
    f: Finding,
    state: Literal["firing", "resolved"],
    window: tuple[datetime, datetime],
    n: int,
) -> tuple[AnomalyDetected, AlertRaised]:
    start, end = window
    anomaly = AnomalyDetected(
        event_id=stable_id(s.anomaly_id, state),
        request_id=s.anomaly_id,
        occurred_at=end,
        anomaly_id=s.anomaly_id,
        metric=s.metric,
        subject=s.subject,
        kind=f.kind,
        state=state,
        baseline=f.baseline,
        observed=f.observed,
        score=f.score,
        window_start=start,
        window_end=end,
        samples=n,
    )
    direction = "above" if f.score > 0 else "below"
    message = (
        f"{s.metric} of {s.subject} is {f.observed:.4g}, {direction} its baseline "
        f"{f.baseline:.4g} ({f.kind}, score {f.score:+.1f})"
        if state == "firing"
        else f"{s.metric} of {s.subject} is back in its normal range ({f.observed:.4g})"
    )
    alert = AlertRaised(
        event_id=stable_id(s.anomaly_id, "alert", state),
        request_id=s.anomaly_id,
        occurred_at=end,
        alert_id=s.anomaly_id,
        rule="anomaly",
        severity="warning",
        subject=f"{s.metric}:{s.subject}",
        state=state,
        value=f.observed,
        threshold=f.baseline,
        message=message,
        started_at=start,
    )
    return anomaly, alert
