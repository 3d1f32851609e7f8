"""A/B experiments on live traffic: an approved proposal joins the queue
(``agents.experiment_queue``), whose head starts when none runs (its split goes out as
a config version); the network aggregator tallies round-1 verdicts per arm over all
partitions, and its conclusion goes out with a config version that promotes the change
or leaves it out, after which the next in the queue starts. An approved system
parameter does not queue: it is applied for the optimizer's before/after test."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agents import experiment_plan, experiment_queue
from agents.capacity import TRIAL_KINDS
from agents.config import PipelineConfig
from agents.config_values import ConfigValueError, changed_from, config_changed, config_of
from agents.ids import stable_id
from connectors.config_log import ConfigConflictError, publish_change
from connectors.topic_reader import read_records
from schemas import topics
from schemas.network_events import (
    ConfigChanged,
    ExperimentConcluded,
    ImprovementProposed,
    LessonLearned,
    ProposalReviewed,
)
from streams import lessons
from streams.live_config import first_version
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    """The stage that starts experiments (and applies changes tested before/after)."""

    @rt.app.agent(rt.topic(topics.REVIEWS), name="experiment_starter")
    async def start_experiments(stream: object) -> None:
        await run(rt, "experiments", stream, lambda r: on_review(rt, r))


@dataclass(frozen=True)
class Log:
    """The network's proposals, reviews and conclusions, read from their topics."""

    proposals: list[ImprovementProposed]
    reviews: list[ProposalReviewed]
    concluded: list[ExperimentConcluded]
    lessons: list[LessonLearned]


async def read_log(rt: Runtime) -> Log:
    kafka, codec = rt.settings.kafka, rt.codec
    return Log(
        await read_records(kafka, topics.PROPOSALS, ImprovementProposed, codec),
        await read_records(kafka, topics.REVIEWS, ProposalReviewed, codec),
        await read_records(kafka, topics.EXPERIMENTS, ExperimentConcluded, codec),
        await read_records(kafka, topics.LESSONS, LessonLearned, codec),
    )


async def on_review(rt: Runtime, record: Record) -> None:
    """An approved proposal: a system parameter is applied for its before/after test;
    anything else joins the experiment queue, whose head starts when none runs."""
    review = rt.codec.decode(record.value, ProposalReviewed)
    if not review.approved:
        return
    log = await read_log(rt)
    proposal = next((p for p in log.proposals if p.proposal_id == review.proposal_id), None)
    if proposal is None:
        _log.error("approved proposal %s is not on the proposals topic", review.proposal_id)
        return
    if proposal.kind in TRIAL_KINDS:
        await apply_for_test(rt, proposal)
        return
    if experiment_plan.running(rt.config):
        queued = experiment_queue.waiting(
            log.proposals, log.reviews, log.concluded, rt.config, rt.clock()
        )
        place = next((i for i, p in enumerate(queued) if p.proposal_id == proposal.proposal_id), -1)
        _log.warning(
            "proposal %s approved; queued at %d of %d behind experiment %s",
            proposal.proposal_id,
            place + 1,
            len(queued),
            rt.config.experiment.id,
        )
        return
    await start_next(rt, log)


def frozen(rt: Runtime, what: str) -> bool:
    """Whether changes are frozen (``GUARDIAN_NETWORK_APPLY_CHANGES=false``): the network
    still diagnoses, proposes and reviews, but starts and applies nothing."""
    if rt.settings.network.apply_changes:
        return False
    _log.warning("changes are frozen (GUARDIAN_NETWORK_APPLY_CHANGES=false): %s", what)
    return True


async def start_next(rt: Runtime, log: Log | None = None, finished: str = "") -> None:
    """Start the experiment of the queue's head, if any and none runs. The queue is
    derived on the latest config version (a promotion just published may have made a
    waiting proposal stale); ``finished`` names a proposal whose experiment concluded
    but whose conclusion may not be on its topic yet."""
    if frozen(rt, "the experiment queue waits"):
        return
    log = log or await read_log(rt)
    n = rt.settings.network
    now = rt.clock()

    def start(config: PipelineConfig) -> PipelineConfig | None:
        return experiment_queue.next_experiment(
            config,
            experiment_queue.waiting(log.proposals, log.reviews, log.concluded, config, now),
            finished=finished,
            share=n.experiment_share,
            min_samples=n.experiment_min_samples,
            alpha=n.experiment_alpha,
        )

    def describe(config: PipelineConfig) -> str:
        spec = config.experiment
        return f"experiment {spec.id} of proposal {spec.proposal_id}"

    await publish(rt, start, "the experiment queue's head", describe=describe)


async def apply_for_test(rt: Runtime, proposal: ImprovementProposed) -> None:
    """Apply a system parameter change for the optimizer's before/after test, if its key
    still holds the value the proposal starts from."""
    if frozen(rt, f"proposal {proposal.proposal_id} is not applied"):
        return

    def apply(config: PipelineConfig) -> PipelineConfig | None:
        return changed_from(config, proposal.key, proposal.current_value, proposal.proposed_value)

    reason = f"before/after test of proposal {proposal.proposal_id}: {proposal.rationale}"
    await publish(rt, apply, reason, changed_by=proposal.proposed_by)


async def on_concluded(rt: Runtime, result: ExperimentConcluded) -> None:
    """The aggregator's conclusion of an experiment: the config version that promotes the
    change or leaves it out, then the conclusion (whoever reads it finds the config
    already changed)."""
    _log.warning("experiment %s: %s (%s)", result.experiment_id, result.decision, result.reason)
    await publish(
        rt,
        lambda config: (
            experiment_plan.finish(config, result)
            if config.experiment.id == result.experiment_id
            else None
        ),
        f"{result.decision}: {result.experiment_id}",
    )
    await rt.emit(result)
    log = await read_log(rt)
    await lessons.settle(rt, result, log.proposals, log.lessons)
    await start_next(rt, log, finished=result.proposal_id)


async def publish(
    rt: Runtime,
    change: Callable[[PipelineConfig], PipelineConfig | None],
    reason: str,
    changed_by: str = "experiments",
    describe: Callable[[PipelineConfig], str] | None = None,
) -> ConfigChanged | None:
    """Publish ``change`` of the latest version; when another writer takes that version
    first, the change is derived again on top of it, or dropped with a warning when
    it no longer applies."""

    def derive(latest: ConfigChanged) -> ConfigChanged | None:
        try:
            previous = config_of(latest)
            new = change(previous)
        except ConfigValueError as exc:
            _log.error("%s cannot run on config version %d: %s", reason, latest.version, exc)
            return None
        if new is None:
            return None
        why = describe(new) if describe else reason
        return config_changed(
            previous,
            new,
            changed_by=changed_by,
            reason=why,
            now=rt.clock(),
            event_id=stable_id(previous.version, why),
        )

    try:
        event = await publish_change(rt.settings.kafka, derive, first_version(rt))
    except ConfigConflictError as exc:
        _log.warning("%s dropped: %s", reason, exc)
        return None
    if event is None:
        _log.warning("%s dropped: the latest config version no longer allows it", reason)
    return event
