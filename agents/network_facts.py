"""The guardian network's facts and the one fold over them: verdicts and feedback
recorded compactly on one partition, and the state that diagnosis windows, experiment
tallies, the knowledge synthesizer's pair counts and the meta-guardian's schedule keep
over them, decided in event time.

Pure: the same facts in the same order give the same state and the same decisions,
whichever worker folds them and however often it restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agents.anomaly_watch import WatchPolicy, WatchState, close_due, count
from agents.config import ExperimentPolicy
from agents.constraints import ANSWERING_SUBTASKS
from agents.diagnosis import DiagnosisWindow, closed, diagnose, observe, window_at
from agents.experiment import ExperimentTally, arm_of, conclude
from agents.experiment import observe as tally
from agents.ids import stable_id
from agents.lessons import LessonBook, LessonRules
from agents.lessons import observe as observe_lessons
from schemas.envelope import Millis
from schemas.network_events import (
    AlertRaised,
    AnomalyDetected,
    ExperimentConcluded,
    FailureDiagnosed,
    GuardianFlag,
    LessonLearned,
    NetworkFactRecorded,
)
from schemas.request_events import FeedbackGiven, VerdictIssued
from schemas.topics import NETWORK_SCOPE

REMEMBERED = 256
"""Proposal ids and alerted metrics of the meta-guardian kept in the state."""


def verdict_fact(
    verdict: VerdictIssued, experiment: ExperimentPolicy, recorded_at: datetime
) -> NetworkFactRecorded:
    """The compact fact of ``verdict``; ``experiment`` is the one of the config version
    it was decided under (its terms travel with the fact)."""
    in_arm = bool(experiment.id) and arm_of(verdict.variant, experiment.id) is not None
    terms = (
        {
            "experiment_id": experiment.id,
            "proposal_id": experiment.proposal_id,
            "min_samples": experiment.min_samples,
            "alpha": experiment.alpha,
            "treatment_share": experiment.share,
        }
        if in_arm
        else {}
    )
    return NetworkFactRecorded(
        event_id=stable_id(verdict.event_id, "fact"),
        request_id=verdict.request_id,
        occurred_at=verdict.occurred_at,
        config_version=verdict.config_version,
        variant=verdict.variant,
        fact="verdict",
        source_event_id=verdict.event_id,
        recorded_at=recorded_at,
        round=verdict.round,
        passed=verdict.passed,
        score=verdict.score,
        threshold=verdict.threshold,
        failure_classes=verdict.failure_classes,
        scores=tuple(GuardianFlag(guardian=s.guardian, passed=s.passed) for s in verdict.scores),
        specialist=verdict.specialist,
        model=verdict.model,
        prompt_version=verdict.prompt_version,
        latency_ms=verdict.latency_ms,
        tokens=verdict.prompt_tokens + verdict.completion_tokens,
        subtask=verdict.subtask,
        task_class=verdict.task_class,
        answer_format=verdict.answer_format,
        reasked_for=verdict.reasked_for,
        **terms,
    )


def feedback_fact(feedback: FeedbackGiven, recorded_at: datetime) -> NetworkFactRecorded:
    return NetworkFactRecorded(
        event_id=stable_id(feedback.event_id, "fact"),
        request_id=feedback.request_id,
        occurred_at=feedback.occurred_at,
        config_version=feedback.config_version,
        variant=feedback.variant,
        fact="feedback",
        source_event_id=feedback.event_id,
        recorded_at=recorded_at,
        kind=feedback.kind,
        rating=feedback.rating,
        signal=feedback.signal,
    )


def tick(now: datetime) -> NetworkFactRecorded:
    """A fact that only moves event time on: windows close and reviews fall due in
    quiet spells too, and a replay of the facts sees the same moments."""
    return NetworkFactRecorded(
        event_id=stable_id("tick", now.isoformat()),
        request_id=NETWORK_SCOPE,
        occurred_at=now,
        fact="tick",
        recorded_at=now,
    )


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExperimentRun(_Frozen):
    """One experiment's tally; once concluded, only the date (the tally is dropped)."""

    experiment_id: str
    proposal_id: str
    min_samples: int
    alpha: float
    share: float
    tally: ExperimentTally = ExperimentTally()
    concluded_at: Millis | None = None


class NetworkState(_Frozen):
    clock: Millis | None = None
    """Event time: the latest verdict or tick time seen."""
    last: str = ""
    """Source id of the last fact applied (a crash may come between two writes)."""
    windows: tuple[DiagnosisWindow, ...] = ()
    experiments: tuple[ExperimentRun, ...] = ()
    reviewed_at: Millis | None = None
    scheduled_at: Millis | None = None
    proposed: tuple[str, ...] = ()
    alerted: tuple[str, ...] = ()
    watch: WatchState = WatchState()
    """The anomaly detector's open window and its series."""
    lessons: LessonBook = LessonBook()
    """The knowledge synthesizer's pair counts and the lessons it learned."""


@dataclass(frozen=True)
class NetworkRules:
    window: timedelta
    min_failures: int = 5
    min_failure_rate: float = 0.2
    review_every: timedelta = timedelta(minutes=1)
    retrain_every: timedelta | None = None
    keep_facts: timedelta = timedelta(hours=2)
    """Verdicts and feedback are kept (for the meta-guardian, and to drop duplicates)
    this long after they were recorded..."""
    max_facts: int = 10_000
    """...and at most this many, the oldest going first."""
    keep_concluded: timedelta = timedelta(days=7)
    """A concluded experiment's date stays this long, so its late verdicts are ignored."""
    watch: WatchPolicy = field(default_factory=WatchPolicy)
    """The anomaly detector's windows and thresholds."""
    lessons: LessonRules = field(default_factory=LessonRules)


@dataclass(frozen=True)
class Decisions:
    diagnoses: tuple[FailureDiagnosed, ...] = ()
    concluded: tuple[ExperimentConcluded, ...] = ()
    review: bool = False
    """The meta-guardian reviews calibration and quality now (at ``state.clock``)."""
    scheduled: bool = False
    """The scheduled retraining recommendation is due."""
    anomalies: tuple[AnomalyDetected | AlertRaised, ...] = ()
    """Incidents of the anomaly detector that start or end now, each with its alert."""
    lessons: tuple[LessonLearned, ...] = ()
    """Lessons the knowledge synthesizer learned from this fact."""


def step(
    state: NetworkState, fact: NetworkFactRecorded, rules: NetworkRules
) -> tuple[NetworkState, Decisions]:
    """Apply one fact (the caller has dropped duplicates): count it, then close what the
    event time has passed."""
    clock = state.clock
    if fact.fact != "feedback":  # a client's own timestamp does not move event time
        clock = fact.occurred_at if clock is None else max(clock, fact.occurred_at)
    if clock is None:
        return state.model_copy(update={"last": fact.source_event_id}), Decisions()
    windows, runs, watch, book = state.windows, state.experiments, state.watch, state.lessons
    concluded: tuple[ExperimentConcluded, ...] = ()
    learned: list[LessonLearned] = []
    watch, anomalies = close_due(watch, clock, rules.watch)
    if fact.fact == "verdict":
        windows = _count_window(windows, fact, clock, rules.window)
        runs, concluded = _count_experiment(runs, fact, clock)
        watch = count(watch, fact, rules.watch)
        book, learned = observe_lessons(book, fact, clock, rules.lessons)
    open_, diagnoses = _close_windows(windows, clock, rules)
    new = state.model_copy(
        update={
            "clock": clock,
            "last": fact.source_event_id if fact.fact != "tick" else state.last,
            "windows": open_,
            "experiments": _kept_runs(runs, clock, rules.keep_concluded),
            "watch": watch,
            "lessons": book,
        }
    )
    new, review, scheduled = _due(new, clock, rules)
    decisions = Decisions(
        tuple(diagnoses), concluded, review, scheduled, tuple(anomalies), tuple(learned)
    )
    return new, decisions


def _count_window(
    windows: tuple[DiagnosisWindow, ...],
    fact: NetworkFactRecorded,
    clock: datetime,
    length: timedelta,
) -> tuple[DiagnosisWindow, ...]:
    """Count a verdict in its window, unless it was history when recorded (a replay of
    old verdicts, a long lag) or its window has closed."""
    if fact.recorded_at - fact.occurred_at > length:
        return windows
    empty = window_at(fact.occurred_at, length)
    held = next((w for w in windows if w.start == empty.start), empty)
    if closed(held, clock):
        return windows
    others = [w for w in windows if w.start != held.start]
    return tuple(sorted([*others, observe(held, fact)], key=lambda w: w.start))


def _close_windows(
    windows: tuple[DiagnosisWindow, ...], clock: datetime, rules: NetworkRules
) -> tuple[tuple[DiagnosisWindow, ...], list[FailureDiagnosed]]:
    found: list[FailureDiagnosed] = []
    for w in windows:
        if closed(w, clock):
            found += diagnose(w, clock, rules.min_failures, rules.min_failure_rate)
    return tuple(w for w in windows if not closed(w, clock)), found


def _count_experiment(
    runs: tuple[ExperimentRun, ...], fact: NetworkFactRecorded, clock: datetime
) -> tuple[tuple[ExperimentRun, ...], tuple[ExperimentConcluded, ...]]:
    """Count a first-round verdict of an experiment's arm, one per request (that of the
    subtask whose answer becomes the response, not a decomposed request's notes, so the
    samples are independent); conclude when it decides."""
    eid = fact.experiment_id
    arm = arm_of(fact.variant, eid) if eid else None
    if eid is None or arm is None or fact.round != 1:
        return runs, ()
    if fact.subtask and fact.subtask not in ANSWERING_SUBTASKS:
        return runs, ()
    run = next((r for r in runs if r.experiment_id == eid), None) or _run_of(fact, eid)
    if run.concluded_at is not None:
        return runs, ()
    run = run.model_copy(update={"tally": tally(run.tally, arm, fact.passed, fact.score)})
    result = conclude(
        run.tally,
        min_samples=run.min_samples,
        alpha=run.alpha,
        experiment_id=eid,
        proposal_id=run.proposal_id,
        now=clock,
        event_id=stable_id(eid, "concluded"),
        treatment_share=run.share,
        config_version=fact.config_version,
    )
    if result is not None:
        run = run.model_copy(update={"tally": ExperimentTally(), "concluded_at": clock})
    others = tuple(r for r in runs if r.experiment_id != eid)
    return (*others, run), (() if result is None else (result,))


def _run_of(fact: NetworkFactRecorded, experiment_id: str) -> ExperimentRun:
    return ExperimentRun(
        experiment_id=experiment_id,
        proposal_id=fact.proposal_id,
        min_samples=max(1, fact.min_samples),
        alpha=fact.alpha if 0 < fact.alpha < 1 else 0.05,
        share=fact.treatment_share,
    )


def _kept_runs(
    runs: tuple[ExperimentRun, ...], clock: datetime, keep: timedelta
) -> tuple[ExperimentRun, ...]:
    """Running experiments, and concluded ones until ``keep`` after their conclusion."""
    return tuple(r for r in runs if r.concluded_at is None or clock - r.concluded_at < keep)


def _due(
    state: NetworkState, clock: datetime, rules: NetworkRules
) -> tuple[NetworkState, bool, bool]:
    review = state.reviewed_at is None or clock - state.reviewed_at >= rules.review_every
    scheduled = False
    updates: dict[str, datetime] = {"reviewed_at": clock} if review else {}
    if rules.retrain_every is not None:
        if state.scheduled_at is None:
            updates["scheduled_at"] = clock
        elif clock - state.scheduled_at >= rules.retrain_every:
            updates["scheduled_at"], scheduled = clock, True
    return state.model_copy(update=updates), review, scheduled


def remembered(state: NetworkState, proposed: Iterable[str], alerted: set[str]) -> NetworkState:
    """The state after a review: the proposals made, and the metrics alerting now."""
    ids = tuple(dict.fromkeys([*state.proposed, *proposed]))[-REMEMBERED:]
    return state.model_copy(update={"proposed": ids, "alerted": tuple(sorted(alerted))})


def expired_facts(
    oldest_first: Iterable[tuple[str, datetime]],
    count: int,
    now: datetime,
    rules: NetworkRules,
) -> list[str]:
    """Kept facts (source id, recorded at; in the order recorded) whose retention is
    over or that exceed the cap."""
    cutoff, excess = now - rules.keep_facts, count - rules.max_facts
    gone: list[str] = []
    for source_id, recorded_at in oldest_first:
        if recorded_at > cutoff and len(gone) >= excess:
            break
        gone.append(source_id)
    return gone


def refold(
    facts: Iterable[NetworkFactRecorded], rules: NetworkRules
) -> list[AnomalyDetected | AlertRaised | LessonLearned]:
    """The anomaly detector's and the knowledge synthesizer's decisions on ``facts`` (in
    log order, from the first fact the aggregator ever folded), a duplicate of a counted
    fact dropped as the live stage drops it: what replay compares with those recorded."""
    state, seen = NetworkState(), set()
    found: list[AnomalyDetected | AlertRaised | LessonLearned] = []
    for fact in facts:
        if fact.fact != "tick":
            if fact.source_event_id in seen:
                continue
            seen.add(fact.source_event_id)
        state, decisions = step(state, fact, rules)
        found += [*decisions.anomalies, *decisions.lessons]
    return found
