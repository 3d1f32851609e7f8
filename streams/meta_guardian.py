"""The meta-guardian stage: user feedback is recorded as network facts; when the
aggregator says a review is due, it proposes pass-threshold changes through the safety
gate, and recommends retraining (an ``AlertRaised``) once per incident when the guardian
score or a specialist's rolling accuracy falls 5% below its baseline, and on a schedule
if configured. Its verdicts and feedback are those of all partitions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from agents.ids import stable_id
from agents.judged import Judged, Rated
from agents.meta_guardian import (
    Drift,
    MetaRules,
    accuracy_drops,
    accuracy_samples,
    propose_threshold,
)
from agents.network_facts import NetworkState, feedback_fact, remembered
from schemas import topics
from schemas.network_events import AlertRaised
from schemas.request_events import FeedbackGiven
from streams.facts_topic import send_fact
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    """The feedback stage: every feedback becomes a fact for the aggregator."""

    @rt.app.agent(rt.topic(topics.FEEDBACK), name="meta_feedback")
    async def keep_feedback(stream: object) -> None:
        await run(rt, "meta_guardian", stream, lambda r: _record_feedback(rt, r))


async def _record_feedback(rt: Runtime, record: Record) -> None:
    feedback = rt.codec.decode(record.value, FeedbackGiven)
    await send_fact(rt, feedback_fact(feedback, rt.clock()))


async def review(
    rt: Runtime,
    state: NetworkState,
    verdicts: Sequence[Judged],
    feedback: Sequence[Rated],
    now: datetime,
) -> NetworkState:
    """Propose a threshold change (once per proposal) and recommend retraining (once per
    incident); returns the state that remembers both."""
    rules = MetaRules(min_rated=rt.settings.network.meta_min_rated)
    made = []
    for proposal in propose_threshold(verdicts, feedback, rt.config, now, rules):
        if proposal.proposal_id not in state.proposed:
            made.append(proposal.proposal_id)
            _log.warning(
                "meta-guardian proposes %s=%s: %s",
                proposal.key,
                proposal.proposed_value,
                proposal.rationale,
            )
            await rt.emit(proposal)
    alerting = await _quality(rt, set(state.alerted), verdicts, feedback, now)
    return remembered(state, made, alerting)


async def _quality(
    rt: Runtime,
    alerted: set[str],
    verdicts: Sequence[Judged],
    feedback: Sequence[Rated],
    now: datetime,
) -> set[str]:
    """Recommend retraining once per incident when a specialist's accuracy as users
    rated it, over the last window, is 5% below the window before. (The guardians' own
    scores and pass rates are the anomaly detector's: ``agents.anomaly_watch``.)
    Returns the metrics alerting now."""
    n = rt.settings.network
    window = timedelta(seconds=n.drift_window_s)
    drops = accuracy_drops(verdicts, feedback, now, window, min_samples=n.drift_min_samples)
    degraded = {d.metric: d for d in drops if d.degraded}
    for metric, found in degraded.items():
        if metric not in alerted:  # a recovered metric may alert again later
            await rt.emit(_recommendation(rt, found, now - window, now))
    return set(degraded)


def _recommendation(rt: Runtime, found: Drift, started: datetime, now: datetime) -> AlertRaised:
    alert_id = stable_id("retraining_recommended", found.metric, started.isoformat())
    return AlertRaised(
        event_id=stable_id(alert_id, "firing"),
        request_id=alert_id,
        occurred_at=now,
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


async def scheduled_recommendation(
    rt: Runtime, verdicts: Sequence[Judged], feedback: Sequence[Rated], now: datetime
) -> None:
    """The periodic recommendation, whatever the metrics say, with the current accuracy."""
    window = timedelta(seconds=rt.settings.network.drift_window_s)
    samples = accuracy_samples(verdicts, feedback, now - window, now)
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
