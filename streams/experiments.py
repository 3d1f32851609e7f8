"""A/B experiments on live traffic: an approved proposal starts one (its split goes out
as a config version); the network aggregator tallies round-1 verdicts per arm over all
partitions, and its conclusion goes out with a config version that promotes the change
or leaves it out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agents import experiment_plan
from agents.config import PipelineConfig
from agents.config_values import ConfigValueError, config_changed, config_of
from agents.ids import stable_id
from connectors.config_log import ConfigConflictError, publish_change
from schemas import topics
from schemas.network_events import (
    ConfigChanged,
    ExperimentConcluded,
    ImprovementProposed,
    ProposalReviewed,
)
from streams.live_config import first_version
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)
PROPOSALS_KEPT = 1000


@dataclass
class Experiments:
    proposals: dict[str, ImprovementProposed] = field(default_factory=dict)


def register(rt: Runtime) -> None:
    """The stages that start experiments."""
    state = Experiments()

    @rt.app.agent(rt.topic(topics.PROPOSALS), name="experiment_proposals")
    async def remember_proposals(stream: object) -> None:
        await run(rt, "experiments", stream, lambda r: remember(rt, state, r))

    @rt.app.agent(rt.topic(topics.REVIEWS), name="experiment_starter")
    async def start_experiments(stream: object) -> None:
        await run(rt, "experiments", stream, lambda r: on_review(rt, state, r))


async def remember(rt: Runtime, state: Experiments, record: Record) -> None:
    proposal = rt.codec.decode(record.value, ImprovementProposed)
    state.proposals[proposal.proposal_id] = proposal
    while len(state.proposals) > PROPOSALS_KEPT:
        state.proposals.pop(next(iter(state.proposals)))


async def on_review(rt: Runtime, state: Experiments, record: Record) -> None:
    review = rt.codec.decode(record.value, ProposalReviewed)
    proposal = state.proposals.get(review.proposal_id)
    if not review.approved or proposal is None:
        return
    if experiment_plan.running(rt.config):
        _log.warning("proposal %s approved; waits: an experiment runs", proposal.proposal_id)
        return
    n = rt.settings.network
    experiment_id = stable_id(proposal.proposal_id, "experiment")

    def start(config: PipelineConfig) -> PipelineConfig | None:
        if experiment_plan.running(config):  # another writer started one first
            return None
        return experiment_plan.start(
            config,
            proposal,
            experiment_id,
            share=n.experiment_share,
            min_samples=n.experiment_min_samples,
            alpha=n.experiment_alpha,
        )

    await _publish(rt, start, f"experiment {experiment_id} of proposal {proposal.proposal_id}")


async def on_concluded(rt: Runtime, result: ExperimentConcluded) -> None:
    """The aggregator's conclusion of an experiment: the config version that promotes the
    change or leaves it out, then the conclusion (whoever reads it finds the config
    already changed)."""
    _log.warning("experiment %s: %s (%s)", result.experiment_id, result.decision, result.reason)
    await _publish(
        rt,
        lambda config: (
            experiment_plan.finish(config, result)
            if config.experiment.id == result.experiment_id
            else None
        ),
        f"{result.decision}: {result.experiment_id}",
    )
    await rt.emit(result)


async def _publish(
    rt: Runtime, change: Callable[[PipelineConfig], PipelineConfig | None], reason: str
) -> None:
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
        return config_changed(
            previous,
            new,
            changed_by="experiments",
            reason=reason,
            now=rt.clock(),
            event_id=stable_id(previous.version, reason),
        )

    try:
        event = await publish_change(rt.settings.kafka, derive, first_version(rt))
    except ConfigConflictError as exc:
        _log.warning("%s dropped: %s", reason, exc)
        return
    if event is None:
        _log.warning("%s dropped: the latest config version no longer allows it", reason)
