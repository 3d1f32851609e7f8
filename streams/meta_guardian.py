"""The meta-guardian stage: keeps recent verdicts and user feedback, and on a timer
proposes pass-threshold changes through the safety gate and raises a quality-drop
alert (a retraining recommendation) when guardian scores fall 5% below baseline."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

from agents.ids import stable_id
from agents.meta_guardian import MetaRules, drift, propose_threshold, scores_between
from schemas import topics
from schemas.network_events import AlertRaised
from schemas.request_events import FeedbackGiven, VerdictIssued
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
KEPT = 5000


@dataclass
class Observations:
    verdicts: deque[VerdictIssued] = field(default_factory=lambda: deque(maxlen=KEPT))
    feedback: deque[FeedbackGiven] = field(default_factory=lambda: deque(maxlen=KEPT))
    proposed: set[str] = field(default_factory=set)
    alerted: set[str] = field(default_factory=set)


def register(rt: Runtime) -> None:
    seen = Observations()
    n = rt.settings.network

    @rt.app.agent(rt.topic(topics.VERDICTS), name="meta_verdicts")
    async def keep_verdicts(stream: object) -> None:
        await run(rt, "meta_guardian", stream, lambda r: _keep_verdict(rt, seen, r))

    @rt.app.agent(rt.topic(topics.FEEDBACK), name="meta_feedback")
    async def keep_feedback(stream: object) -> None:
        await run(rt, "meta_guardian", stream, lambda r: _keep_feedback(rt, seen, r))

    @rt.app.timer(interval=n.meta_interval_s)  # type: ignore[untyped-decorator]
    async def calibrate() -> None:
        await review_calibration(rt, seen)


async def _keep_verdict(rt: Runtime, seen: Observations, record: Record) -> None:
    seen.verdicts.append(rt.codec.decode(record.value, VerdictIssued))


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
    """Compare the last window's guardian scores with the window before it."""
    window = timedelta(seconds=rt.settings.network.drift_window_s)
    now = rt.clock()
    recent = scores_between(seen.verdicts, now - window, now)
    baseline = scores_between(seen.verdicts, now - 2 * window, now - window)
    found = drift("guardian.score", baseline, recent)
    if not found.degraded:
        return
    started = now - window
    alert_id = stable_id("quality_drop", found.metric, started.replace(second=0, microsecond=0))
    if alert_id in seen.alerted:
        return
    seen.alerted.add(alert_id)
    await rt.emit(
        AlertRaised(
            event_id=stable_id(alert_id, "firing"),
            request_id=alert_id,
            occurred_at=now,
            config_version=rt.config.version,
            alert_id=alert_id,
            rule="quality_drop",
            severity="warning",
            subject=found.metric,
            state="firing",
            value=found.recent_mean,
            threshold=found.baseline_mean * 0.95,
            message=(
                f"mean guardian score fell {-found.relative_change:.1%} below its baseline "
                f"({found.recent_mean:.3f} vs {found.baseline_mean:.3f}): retraining or "
                "re-tuning the specialists is recommended"
            ),
            started_at=started,
        )
    )
