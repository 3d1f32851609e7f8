"""The meta-guardian stage: keeps recent verdicts and user feedback; on a timer it
proposes pass-threshold changes through the safety gate, and recommends retraining
(an ``AlertRaised``) once per incident when the guardian score or a specialist's
rolling accuracy falls 5% below its baseline, and on a schedule if configured."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.ids import stable_id
from agents.meta_guardian import (
    Drift,
    MetaRules,
    accuracy_drops,
    accuracy_samples,
    drift,
    propose_threshold,
    scores_between,
)
from schemas import topics
from schemas.network_events import AlertRaised
from schemas.request_events import FeedbackGiven, VerdictIssued
from streams.runtime import Runtime
from streams.stage import Record, run
from streams.verdict_watch import VerdictObserver

_log = logging.getLogger(__name__)
KEPT = 5000


@dataclass
class Observations:
    verdicts: deque[VerdictIssued] = field(default_factory=lambda: deque(maxlen=KEPT))
    feedback: deque[FeedbackGiven] = field(default_factory=lambda: deque(maxlen=KEPT))
    proposed: set[str] = field(default_factory=set)
    alerted: set[str] = field(default_factory=set)


def register(rt: Runtime) -> VerdictObserver:
    """The feedback stage and the timers; returns the keeper of recent verdicts, for the
    verdict watchers to feed."""
    seen = Observations()
    n = rt.settings.network

    @rt.app.agent(rt.topic(topics.FEEDBACK), name="meta_feedback")
    async def keep_feedback(stream: object) -> None:
        await run(rt, "meta_guardian", stream, lambda r: _keep_feedback(rt, seen, r))

    @rt.app.timer(interval=n.meta_interval_s)  # type: ignore[untyped-decorator]
    async def calibrate() -> None:
        await review_calibration(rt, seen)

    if n.retrain_every_s > 0:

        @rt.app.timer(interval=n.retrain_every_s)  # type: ignore[untyped-decorator]
        async def scheduled() -> None:
            await scheduled_recommendation(rt, seen)

    return VerdictObserver("meta_guardian", lambda v: _keep_verdict(seen, v))


async def _keep_verdict(seen: Observations, verdict: VerdictIssued) -> None:
    seen.verdicts.append(verdict)


async def _keep_feedback(rt: Runtime, seen: Observations, record: Record) -> None:
    seen.feedback.append(rt.codec.decode(record.value, FeedbackGiven))


async def review_calibration(rt: Runtime, seen: Observations) -> None:
    n = rt.settings.network
    rules = MetaRules(min_rated=n.meta_min_rated)
    now = rt.clock()
    for proposal in propose_threshold(
        list(seen.verdicts), list(seen.feedback), rt.config, now, rules
    ):
        if proposal.proposal_id not in seen.proposed:
            seen.proposed.add(proposal.proposal_id)
            _log.warning(
                "meta-guardian proposes %s=%s: %s",
                proposal.key,
                proposal.proposed_value,
                proposal.rationale,
            )
            await rt.emit(proposal)
    await _quality(rt, seen)


async def _quality(rt: Runtime, seen: Observations) -> None:
    """Recommend retraining once per incident when a quality metric of the last window
    is 5% below the window before: the guardian score overall, and each specialist's
    accuracy as users rated it."""
    n = rt.settings.network
    window = timedelta(seconds=n.drift_window_s)
    now = rt.clock()
    verdicts, feedback = list(seen.verdicts), list(seen.feedback)
    score = drift(
        "guardian.score",
        scores_between(verdicts, now - 2 * window, now - window),
        scores_between(verdicts, now - window, now),
        min_samples=n.drift_min_samples,
    )
    drops = accuracy_drops(verdicts, feedback, now, window, min_samples=n.drift_min_samples)
    degraded = {d.metric: d for d in [score, *drops] if d.degraded}
    seen.alerted &= set(degraded)  # a recovered metric may alert again later
    for metric, found in degraded.items():
        if metric not in seen.alerted:
            seen.alerted.add(metric)
            await rt.emit(_recommendation(rt, found, now - window))


def _recommendation(rt: Runtime, found: Drift, started: datetime) -> AlertRaised:
    alert_id = stable_id("retraining_recommended", found.metric, started.isoformat())
    return AlertRaised(
        event_id=stable_id(alert_id, "firing"),
        request_id=alert_id,
        occurred_at=rt.clock(),
        config_version=rt.config.version,
        alert_id=alert_id,
        rule="retraining_recommended",
        severity="warning",
        subject=found.metric,
        state="firing",
        value=found.recent_mean,
        threshold=found.baseline_mean * 0.95,
        message=(
            f"{found.metric} fell {-found.relative_change:.1%} below its baseline "
            f"({found.recent_mean:.3f} vs {found.baseline_mean:.3f}, {found.recent_n} vs "
            f"{found.baseline_n} samples): retraining or re-tuning is recommended"
        ),
        started_at=started,
    )


async def scheduled_recommendation(rt: Runtime, seen: Observations) -> None:
    """The periodic recommendation, whatever the metrics say, with the current accuracy."""
    window = timedelta(seconds=rt.settings.network.drift_window_s)
    now = rt.clock()
    samples = accuracy_samples(list(seen.verdicts), list(seen.feedback), now - window, now)
    summary = ", ".join(f"{k} {sum(v) / len(v):.2f} ({len(v)})" for k, v in samples.items())
    alert_id = stable_id("retraining_scheduled", now.isoformat())
    await rt.emit(
        AlertRaised(
            event_id=stable_id(alert_id, "firing"),
            request_id=alert_id,
            occurred_at=now,
            config_version=rt.config.version,
            alert_id=alert_id,
            rule="retraining_scheduled",
            severity="info",
            subject="specialists",
            state="firing",
            value=0.0,
            threshold=0.0,
            message=f"scheduled retraining review; accuracy: {summary or 'no rated answers'}",
            started_at=now,
        )
    )
