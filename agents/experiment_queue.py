"""The queue of A/B experiments: one experiment runs at a time on live traffic, and the
approved proposals wait in a queue with priorities. The log is the queue: it is derived
from the proposals, their reviews and the experiments concluded, so it survives any
restart and a replay derives the same order.

Priority: system parameters first (thresholds, sampling, token limits, rounds, routing),
then lessons, then prompt variants; the oldest first within a priority. A proposal
whose starting value is no longer the live one is stale and leaves the queue, as does
one older than ``max_age``.

Why a queue and not concurrent experiments on disjoint slices: with a fixed request
rate, experiments on slices of 1/k of the traffic each take k times as long, so running
them together finishes the whole set no sooner, while one at a time keeps every
experiment's control arm clean of the others' treatments and lets the most urgent
change finish first. Changes that cannot be split by request (slots, lane guard,
routing weights, rounds against a latency budget) do not queue here at all: they are
tested before/after by the system optimizer (``agents.capacity``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from agents import experiment_plan
from agents.capacity import TRIAL_KINDS
from agents.config import PipelineConfig
from agents.config_values import holds
from agents.ids import stable_id
from schemas.network_events import ExperimentConcluded, ImprovementProposed, ProposalReviewed

PRIORITY = {
    "threshold": 0,
    "temperature": 0,
    "max_tokens": 0,
    "model": 0,
    "routing_weight": 0,
    "max_rounds": 0,
    "lesson": 1,
    "prompt": 2,
}
"""Lower first; a kind not named here waits with lessons."""
MAX_AGE = timedelta(days=1)


def waiting(
    proposals: Iterable[ImprovementProposed],
    reviews: Iterable[ProposalReviewed],
    concluded: Iterable[ExperimentConcluded],
    config: PipelineConfig,
    now: datetime,
    max_age: timedelta = MAX_AGE,
) -> list[ImprovementProposed]:
    """The approved proposals waiting for an experiment, the next one first."""
    approved = {r.proposal_id for r in reviews if r.approved}
    done = {c.proposal_id for c in concluded} | {config.experiment.proposal_id}
    seen: dict[str, ImprovementProposed] = {}
    for p in proposals:
        if p.proposal_id in seen or p.proposal_id not in approved or p.proposal_id in done:
            continue
        if p.kind in TRIAL_KINDS or now - p.occurred_at > max_age:
            continue
        if not holds(config, p.key, p.current_value):
            continue
        seen[p.proposal_id] = p
    return sorted(seen.values(), key=lambda p: (_rank(p), p.occurred_at, p.proposal_id))


def _rank(p: ImprovementProposed) -> int:
    return PRIORITY.get(p.kind, PRIORITY["lesson"])


def next_experiment(
    config: PipelineConfig,
    queued: Sequence[ImprovementProposed],
    *,
    finished: str = "",
    share: float,
    min_samples: int,
    alpha: float,
) -> PipelineConfig | None:
    """``config`` with the experiment of the queue's head running (``queued`` as
    ``waiting`` orders it on this very config), or None when one runs already or none
    waits. ``finished`` names a proposal whose experiment just concluded, whose
    conclusion may not be on its topic yet."""
    if experiment_plan.running(config):
        return None
    head = next((p for p in queued if p.proposal_id != finished), None)
    if head is None:
        return None
    experiment_id = stable_id(head.proposal_id, "experiment")
    return experiment_plan.start(
        config, head, experiment_id, share=share, min_samples=min_samples, alpha=alpha
    )
