"""``guardian optimizer``: the system optimizer's bottlenecks, the changes it proposed
and how their before/after tests ended; ``--verify`` folds the workers' load reports
again and compares the decisions it re-derives with those recorded."""

from __future__ import annotations

import argparse
import asyncio

from agents.capacity import PROPOSER, refold
from schemas import topics
from schemas.network_events import (
    BottleneckIdentified,
    ImprovementProposed,
    PerformanceCompared,
    ProposalReviewed,
    WorkerLoadReported,
)
from streams.capacity import rules_of_settings
from streams.cli_anomalies import add_listing_command, read_all, report_refold
from streams.settings import AppSettings

Decision = BottleneckIdentified | ImprovementProposed | PerformanceCompared


def add_optimizer_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_listing_command(
        sub,
        "optimizer",
        _optimizer,
        lists="the system optimizer's bottlenecks, proposals and tests",
        verify="fold the workers' load reports again and compare with the decisions recorded",
        one="decision",
    )


def _optimizer(args: argparse.Namespace) -> int:
    settings = AppSettings.load()
    recorded = asyncio.run(_recorded(settings))
    if not args.verify:
        reviews = asyncio.run(read_all(settings, topics.REVIEWS, ProposalReviewed))
        verdict = {r.proposal_id: r for r in reviews}
        for event in recorded:
            print(event.model_dump_json() if args.json else describe(event, verdict))
        if not recorded:
            print("no bottleneck recorded")
        return 0
    reports = asyncio.run(read_all(settings, topics.WORKER_LOAD, WorkerLoadReported))
    again = refold(reports, rules_of_settings(settings.network))
    return report_refold(
        again, recorded, f"{len(reports)} load reports", "the reports topic keeps a day"
    )


async def _recorded(settings: AppSettings) -> list[Decision]:
    bottlenecks = await read_all(settings, topics.BOTTLENECKS, BottleneckIdentified)
    proposals = await read_all(settings, topics.PROPOSALS, ImprovementProposed)
    results = await read_all(settings, topics.PERFORMANCE, PerformanceCompared)
    mine = [p for p in proposals if p.proposed_by == PROPOSER]
    events: list[Decision] = [*bottlenecks, *mine, *results]
    return sorted(events, key=lambda e: e.occurred_at)


def describe(event: Decision, reviews: dict[str, ProposalReviewed]) -> str:
    at = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(event, BottleneckIdentified):
        return (
            f"{at}  bottleneck {event.kind} ({event.subject}): {event.summary}; "
            f"{event.recommended_workers} workers recommended for {event.workers}"
        )
    if isinstance(event, ImprovementProposed):
        review = reviews.get(event.proposal_id)
        state = (
            "awaiting review"
            if review is None
            else ("approved" if review.approved else "rejected: " + "; ".join(review.reasons))
        )
        return (
            f"{at}  proposal {event.proposal_id[:12]} {event.key} "
            f"{event.current_value} -> {event.proposed_value} ({state})"
        )
    return (
        f"{at}  test of {event.proposal_id[:12]} {event.key} {event.previous_value} -> "
        f"{event.tested_value}: {event.decision} ({event.reason})"
    )
