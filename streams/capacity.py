"""The system optimizer stage: every worker's load reports, in their one partition,
folded by ``agents.capacity`` on the worker that owns it. Its bottlenecks, proposals and
before/after results go out as events; a change the test rejects is rolled back as a
``ConfigChanged``. The fold's state lives in a changelog-backed table, so the next owner
goes on from where it stopped, a test under way included."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agents.capacity import CapacityRules, CapacityState, Decisions, step
from agents.config import PipelineConfig
from agents.config_values import changed_from
from schemas import topics
from schemas.network_events import PerformanceCompared, WorkerLoadReported
from schemas.topics import CAPACITY_TABLE
from streams import experiments
from streams.keyed_table import keyed_table
from streams.runtime import Runtime, sends_of_record
from streams.settings import NetworkSettings
from streams.stage import Record, run

_log = logging.getLogger(__name__)
STAGE = "system_optimizer"
STATE_KEY = b"state"


@dataclass
class CapacityIndex:
    """The table as the optimizer reads it; follows recovery and rebalances."""

    state: CapacityState = field(default_factory=CapacityState)

    def recovered(self, key: bytes, value: bytes | None) -> None:
        if key == STATE_KEY:
            self.state = (
                CapacityState() if value is None else CapacityState.model_validate_json(value)
            )

    def kept(self, partitions: set[int], count: int) -> None:
        if 0 not in partitions:
            self.state = CapacityState()


@dataclass
class Optimizer:
    table: Any  # KeyedTable: STATE_KEY -> CapacityState JSON
    index: CapacityIndex
    rules: CapacityRules


def rules_of_settings(n: NetworkSettings) -> CapacityRules:
    """The optimizer's rules (worker settings, not live config: a replay of the reports
    re-derives its decisions under the same settings)."""
    return CapacityRules(
        report_every=timedelta(seconds=n.load_report_s),
        sustain=n.optimizer_sustain,
        busy_share=n.optimizer_busy_share,
        latency_budget_ms=n.optimizer_latency_budget_ms,
        settle=n.optimizer_settle,
        measure=n.optimizer_measure,
        min_gain=n.optimizer_min_gain,
        cooldown=timedelta(seconds=n.optimizer_cooldown_s),
        apply_timeout=timedelta(seconds=n.optimizer_apply_timeout_s),
    )


def register(rt: Runtime) -> Optimizer:
    index = CapacityIndex()
    opt = Optimizer(
        keyed_table(rt.app, CAPACITY_TABLE, 1, index), index, rules_of_settings(rt.settings.network)
    )

    @rt.app.agent(rt.topic(topics.WORKER_LOAD), name=STAGE)
    async def system_optimizer(stream: object) -> None:
        await run(rt, STAGE, stream, lambda r: on_report(rt, opt, r))

    return opt


async def on_report(rt: Runtime, opt: Optimizer, record: Record) -> None:
    """Fold one report (a copy, or one older than a worker's folded report, changes
    nothing); the decisions are sent and acknowledged before the state that records
    them is written, so a crash in between makes the next owner send them again."""
    report = rt.codec.decode(record.value, WorkerLoadReported)
    state, decisions = step(opt.index.state, report, opt.rules)
    if state is opt.index.state:
        _log.debug("%s: report %s already folded", STAGE, report.event_id)
        return
    async with sends_of_record():
        await _execute(rt, decisions)
    opt.table[STATE_KEY] = state.model_dump_json().encode()
    opt.index.state = state


async def _execute(rt: Runtime, decisions: Decisions) -> None:
    """Bottlenecks, then proposals (the safety monitor reviews them), then results, each
    rollback published before its result."""
    if decisions.recommended_workers is not None:
        rt.metrics.recommended_workers.set(decisions.recommended_workers)
    for b in decisions.bottlenecks:
        _log.warning("bottleneck %s (%s): %s", b.kind, b.subject, b.summary)
        await rt.emit(b)
    for p in decisions.proposals:
        _log.warning("proposal %s: %s=%s (%s)", p.proposal_id, p.key, p.proposed_value, p.rationale)
        await rt.emit(p)
    for pid in decisions.gave_up:
        _log.warning("proposal %s was not applied in time: given up", pid)
    for result in decisions.compared:
        _log.warning(
            "before/after of %s: %s (%s)", result.proposal_id, result.decision, result.reason
        )
        if result.decision == "rollback":
            await roll_back(rt, result)
        await rt.emit(result)


async def roll_back(rt: Runtime, result: PerformanceCompared) -> None:
    """The tested key back to its previous value, if it still holds the tested one."""

    def restore(config: PipelineConfig) -> PipelineConfig | None:
        return changed_from(config, result.key, result.tested_value, result.previous_value)

    reason = f"rollback of proposal {result.proposal_id}: {result.reason}"
    await experiments.publish(rt, restore, reason, changed_by="system-optimizer")
