"""The system optimizer: from the workers' load reports to the bottleneck, the one
parameter change that relieves it, and the before/after test that keeps the change or
rolls it back.

A pure fold over ``WorkerLoadReported`` in the order of their single partition. Each
report carries the values its worker runs under of every key tuned here (``applied``),
so the fold needs no configuration of its own and a replay of the reports re-derives
every decision.

Once per report interval the latest report of every live worker makes a snapshot of the
cluster. A condition must hold in ``sustain`` snapshots in a row to name a bottleneck
(once per incident: it is named again only after it has cleared for ``sustain``
snapshots), and only one change is tested at a time:

- **slow_deployment**: a deployment with traffic share answers ``slow_factor`` times
  slower than the median of the others: its routing weight is halved;
- **model_slots**: the model-call slots are busy (``busy_share``) and more than
  ``backlog_s`` of work waits (read ahead, or still in Kafka): more slots per worker,
  sized on the demand (at most doubled, at most the worker's ceiling); at the ceiling,
  the bottleneck is **workers** and only a worker count is recommended;
- **starved_lane**: a lower lane waits ``starved_wait_factor`` times longer for a slot
  than the most urgent one: the starvation guard serves it twice as often;
- **latency_budget**: the p95 end-to-end latency is over the budget and requests take
  more than one round on average: one round fewer.

A change is tested before/after, not A/B: a worker's slots or a deployment's traffic
share are shared by every request, so they cannot be split by request. Once every
worker reports the tested value, ``settle`` snapshots are skipped and the metric is
averaged over the ``measure`` after; the change is kept when the metric improved by
``min_gain`` or the condition cleared, and rolled back otherwise.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agents.config_values import encode
from agents.ids import stable_id
from schemas.network_events import (
    BottleneckIdentified,
    ImprovementProposed,
    PerformanceCompared,
    ProposalKind,
    WorkerLoadReported,
)

CONCURRENCY_KEY = "capacity.specialist_concurrency"
GUARD_KEY = "capacity.priority_guard_every"
WEIGHTS_KEY = "routing.weights"
ROUNDS_KEY = "refine.max_rounds"
TUNED_KEYS = (CONCURRENCY_KEY, GUARD_KEY, WEIGHTS_KEY, ROUNDS_KEY)
"""The keys the system optimizer tunes; every report carries their applied values."""
TRIAL_KINDS = frozenset({"concurrency", "lane_guard", "routing_weight", "max_rounds"})
"""Proposal kinds tested before/after instead of by an A/B split."""
PROPOSER = "system-optimizer"
TESTED_KEPT = 100
Kind = Literal["model_slots", "workers", "slow_deployment", "starved_lane", "latency_budget"]


@dataclass(frozen=True)
class CapacityRules:
    report_every: timedelta = timedelta(seconds=10)
    sustain: int = 3
    """Snapshots in a row a condition must hold to be a bottleneck (and be absent to clear)."""
    busy_share: float = 0.9
    backlog_s: float = 1.0
    """Busy slots are a bottleneck once more tasks wait than this many seconds of work
    (and than the slots of all workers)."""
    slow_factor: float = 2.0
    min_calls: int = 10
    """Calls a deployment needs in a snapshot for its latency to count."""
    starved_wait_factor: float = 10.0
    starved_min_wait_ms: float = 1000.0
    latency_budget_ms: float = 30_000.0
    rounds_over: float = 1.5
    """Mean rounds from which fewer rounds would shorten the latency."""
    settle: int = 1
    measure: int = 3
    min_gain: float = 0.1
    apply_timeout: timedelta = timedelta(minutes=5)
    """A proposal not applied by then (rejected, or never published) is given up."""
    cooldown: timedelta = timedelta(minutes=1)
    """After a test ends, before the next proposal."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Snapshot(_Frozen):
    """The cluster at one evaluation: the latest report of every live worker."""

    at: datetime
    start: datetime
    workers: int
    slots: int
    """Slots per worker (the smallest any worker runs with)."""
    ceiling: int
    """In-flight calls per lane a worker can hold (the smallest of the workers')."""
    guard_every: int
    partitions: int
    busy: float
    task_lag: int
    granted_rate: float
    """Tasks given a slot per second, all workers."""
    lane_wait: dict[str, float]
    lane_lag: dict[str, int]
    lanes: tuple[str, ...]
    """Lane names, most urgent first."""
    latency: dict[str, float]
    calls: dict[str, int]
    open_breakers: tuple[str, ...]
    p95_ms: float
    mean_rounds: float
    applied: dict[str, str]
    """Tuned keys every live worker runs with the same value of."""


class Trial(_Frozen):
    """A proposed change under test (``applied_at`` None: not yet on every worker)."""

    proposal_id: str
    bottleneck_id: str
    kind: Kind
    subject: str
    key: str
    previous: str
    tested: str
    metric: str
    higher_is_better: bool
    before: float
    proposed_at: datetime
    applied_at: datetime | None = None
    skipped: int = 0
    after: tuple[float, ...] = ()
    cleared: bool = True
    """Whether the condition has held in none of the snapshots after so far."""


class CapacityState(_Frozen):
    reports: dict[str, WorkerLoadReported] = {}
    last_eval: datetime | None = None
    recent: tuple[Snapshot, ...] = ()
    holds: dict[str, int] = {}
    misses: dict[str, int] = {}
    open: dict[str, str] = {}
    """Condition (``kind/subject``) -> the id of its open incident."""
    trial: Trial | None = None
    quiet_until: datetime | None = None
    tested: tuple[str, ...] = ()
    """Proposals already tested (the last ``TESTED_KEPT``): never proposed again."""


@dataclass
class Decisions:
    bottlenecks: list[BottleneckIdentified] = field(default_factory=list)
    proposals: list[ImprovementProposed] = field(default_factory=list)
    compared: list[PerformanceCompared] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    """Proposals never applied within the timeout."""
    recommended_workers: int | None = None
    """At an evaluation, the workers the load needs now (the live workers when nothing
    asks for more)."""


@dataclass(frozen=True)
class Finding:
    """One condition that holds in a snapshot, with the change that would relieve it."""

    kind: Kind
    subject: str
    metric: str
    observed: float
    limit: float
    higher_is_better: bool
    change: tuple[str, str] | None
    """(key, JSON value) to test, or None when no parameter change would help."""
    why: str
    recommended_workers: int

    @property
    def condition(self) -> str:
        return f"{self.kind}/{self.subject}"


def step(
    state: CapacityState, report: WorkerLoadReported, rules: CapacityRules
) -> tuple[CapacityState, Decisions]:
    """Fold one report; at most once per ``report_every`` the cluster is evaluated."""
    now = report.window_end
    held = state.reports.get(report.worker)
    if held is not None and now <= held.window_end:  # a copy, or older than one folded
        return state, Decisions()
    reports = {**state.reports, report.worker: report}
    horizon = now - 3 * rules.report_every
    reports = {w: r for w, r in reports.items() if r.window_end > horizon}
    state = state.model_copy(update={"reports": reports})
    decisions = Decisions()
    due = state.last_eval is None or now - state.last_eval >= rules.report_every * 0.9
    if not due:
        return state, decisions
    previous = state.recent[-1] if state.recent else None
    snap = snapshot(reports.values(), now)
    recent = (*state.recent, snap)[-(rules.sustain + 1) :]
    state = state.model_copy(update={"last_eval": now, "recent": recent})
    findings = find(snap, previous, rules)
    decisions.recommended_workers = max([snap.workers, *(f.recommended_workers for f in findings)])
    state = _track(state, findings, snap, rules, decisions)
    state = _test(state, snap, findings, rules, decisions)
    return _propose(state, snap, findings, rules, decisions), decisions


def snapshot(reports: Iterable[WorkerLoadReported], now: datetime) -> Snapshot:
    """The cluster from the latest report of each live worker."""
    rs = sorted(reports, key=lambda r: r.worker)
    start = min((r.window_start for r in rs), default=now)
    spans = [(r.window_end - r.window_start).total_seconds() for r in rs]
    seconds = max(1e-3, statistics.fmean(spans)) if spans else 1.0
    lanes = tuple(lane.lane for lane in rs[0].lanes) if rs else ()
    lane_wait: dict[str, float] = {}
    lane_lag: dict[str, int] = {}
    granted = 0
    for name in lanes:
        mine = [ln for r in rs for ln in r.lanes if ln.lane == name]
        n = sum(ln.granted for ln in mine)
        granted += n
        lane_wait[name] = sum(ln.wait_ms * ln.granted for ln in mine) / n if n else 0.0
        lane_lag[name] = sum(ln.lag for ln in mine)
    calls: dict[str, int] = {}
    total_ms: dict[str, float] = {}
    breakers: set[str] = set()
    for r in rs:
        for d in r.deployments:
            calls[d.deployment] = calls.get(d.deployment, 0) + d.calls
            total_ms[d.deployment] = total_ms.get(d.deployment, 0.0) + d.mean_latency_ms * d.calls
            if d.breaker == "open":
                breakers.add(d.deployment)
    responses = sum(r.responses for r in rs)
    applied = {
        key: values.pop()
        for key in TUNED_KEYS
        if len(values := {r.applied.get(key) for r in rs}) == 1 and None not in values
    }
    return Snapshot(
        at=now,
        start=start,
        workers=len(rs),
        slots=min((r.slots for r in rs), default=0),
        ceiling=min((r.slots_ceiling for r in rs), default=0),
        guard_every=min((r.guard_every for r in rs), default=0),
        partitions=max((r.partitions for r in rs), default=0),
        busy=statistics.fmean(r.busy_share for r in rs) if rs else 0.0,
        task_lag=sum(lane_lag.values()),
        granted_rate=granted / seconds,
        lane_wait=lane_wait,
        lane_lag=lane_lag,
        lanes=lanes,
        latency={d: total_ms[d] / n for d, n in calls.items() if n},
        calls=calls,
        open_breakers=tuple(sorted(breakers)),
        p95_ms=max((r.p95_latency_ms for r in rs), default=0.0),
        mean_rounds=(
            sum(r.mean_rounds * r.responses for r in rs) / responses if responses else 0.0
        ),
        applied=applied,
    )


def find(snap: Snapshot, previous: Snapshot | None, rules: CapacityRules) -> list[Finding]:
    """Every condition that holds in ``snap``, most specific first. With an open breaker
    nothing is found: failing calls are the breaker's and the router's to handle."""
    if snap.workers == 0 or snap.open_breakers:
        return []
    return [f for check in _CHECKS if (f := check(snap, previous, rules)) is not None]


def _slow_deployment(
    snap: Snapshot, previous: Snapshot | None, rules: CapacityRules
) -> Finding | None:
    weights = _weights(snap)
    timed = {d: ms for d, ms in snap.latency.items() if snap.calls.get(d, 0) >= rules.min_calls}
    if len(timed) < 2 or weights is None:
        return None
    for slow, ms in sorted(timed.items(), key=lambda kv: -kv[1]):
        others = [v for d, v in timed.items() if d != slow]
        typical = statistics.median(others)
        if weights.get(slow, 0.0) <= 0 or ms < rules.slow_factor * typical:
            continue
        halved = {**weights, slow: round(weights[slow] / 2, 4)}
        if sum(v for d, v in halved.items() if d != slow) <= 0:
            continue
        return Finding(
            "slow_deployment",
            slow,
            "model_latency_ms",
            _weighted_latency(snap),
            rules.slow_factor * typical,
            False,
            (WEIGHTS_KEY, encode(halved)),
            f"{slow} answers in {ms:.0f} ms against {typical:.0f} ms for the others: "
            f"its traffic share is halved",
            snap.workers,
        )
    return None


def _model_slots(snap: Snapshot, previous: Snapshot | None, rules: CapacityRules) -> Finding | None:
    waiting = max(snap.slots * snap.workers, snap.granted_rate * rules.backlog_s)
    if snap.busy < rules.busy_share or snap.task_lag <= waiting or snap.slots <= 0:
        return None
    seconds = (snap.at - previous.at).total_seconds() if previous else 0.0
    growth = (snap.task_lag - previous.task_lag) / seconds if previous and seconds > 0 else 0.0
    served = max(snap.granted_rate, 1e-9)
    demand = min(4.0, max(1.25, 1.25 * (served + max(0.0, growth)) / served))
    per_worker = snap.slots * demand
    workers = min(
        max(snap.partitions, snap.workers),
        max(snap.workers, math.ceil(snap.workers * per_worker / max(1, snap.ceiling))),
    )
    target = min(snap.ceiling, max(snap.slots + 1, math.ceil(snap.slots * min(2.0, demand))))
    kind: Kind
    if snap.slots >= snap.ceiling:
        kind, change = "workers", None
        why = (
            f"every worker's {snap.slots} slots are at its ceiling and busy "
            f"({snap.busy:.0%}) with {snap.task_lag} tasks waiting: {workers} workers needed"
        )
    else:
        kind, change = "model_slots", (CONCURRENCY_KEY, encode(target))
        why = (
            f"slots busy {snap.busy:.0%} with {snap.task_lag} tasks waiting "
            f"(growing {growth:.1f}/s): {snap.slots} -> {target} slots per worker"
        )
    return Finding(
        kind,
        "cluster",
        "tasks_per_s",
        snap.granted_rate,
        _slots_can_serve(snap),
        True,
        change,
        why,
        workers,
    )


def _slots_can_serve(snap: Snapshot) -> float:
    """Tasks a second the cluster's slots can serve at the model's mean latency (0 while
    no call was timed)."""
    latency_ms = _weighted_latency(snap)
    return snap.slots * snap.workers * 1000.0 / latency_ms if latency_ms > 0 else 0.0


def _starved_lane(
    snap: Snapshot, previous: Snapshot | None, rules: CapacityRules
) -> Finding | None:
    if len(snap.lanes) < 2 or snap.guard_every <= 2:
        return None
    urgent = snap.lane_wait.get(snap.lanes[0], 0.0)
    for lane in reversed(snap.lanes[1:]):
        wait = snap.lane_wait.get(lane, 0.0)
        bound = max(rules.starved_min_wait_ms, rules.starved_wait_factor * urgent)
        if snap.lane_lag.get(lane, 0) <= 0 or wait < bound:
            continue
        guard = max(2, snap.guard_every // 2)
        why = (
            f"lane {lane} waits {wait:.0f} ms for a slot against {urgent:.0f} ms for "
            f"{snap.lanes[0]}: the guard serves it every {guard} grants, not {snap.guard_every}"
        )
        return Finding(
            "starved_lane",
            lane,
            f"lane_wait_ms:{lane}",
            wait,
            bound,
            False,
            (GUARD_KEY, encode(guard)),
            why,
            snap.workers,
        )
    return None


def _latency_budget(
    snap: Snapshot, previous: Snapshot | None, rules: CapacityRules
) -> Finding | None:
    rounds = _int(snap.applied.get(ROUNDS_KEY))
    if snap.p95_ms < rules.latency_budget_ms or snap.mean_rounds < rules.rounds_over:
        return None
    if rounds is None or rounds <= 1:
        return None
    why = (
        f"p95 latency {snap.p95_ms:.0f} ms is over the {rules.latency_budget_ms:.0f} ms budget "
        f"at {snap.mean_rounds:.2f} rounds a request: at most {rounds - 1} rounds"
    )
    return Finding(
        "latency_budget",
        "cluster",
        "p95_latency_ms",
        snap.p95_ms,
        rules.latency_budget_ms,
        False,
        (ROUNDS_KEY, encode(rounds - 1)),
        why,
        snap.workers,
    )


_CHECKS: tuple[Callable[[Snapshot, Snapshot | None, CapacityRules], Finding | None], ...] = (
    _slow_deployment,
    _model_slots,
    _starved_lane,
    _latency_budget,
)


def metric_of(snap: Snapshot, metric: str) -> float:
    """A trial's metric in one snapshot."""
    if metric == "tasks_per_s":
        return snap.granted_rate
    if metric == "model_latency_ms":
        return _weighted_latency(snap)
    if metric == "p95_latency_ms":
        return snap.p95_ms
    if metric.startswith("lane_wait_ms:"):
        return snap.lane_wait.get(metric.partition(":")[2], 0.0)
    raise ValueError(f"unknown metric {metric!r}")


def _weighted_latency(snap: Snapshot) -> float:
    n = sum(snap.calls.values())
    return sum(snap.latency.get(d, 0.0) * c for d, c in snap.calls.items()) / n if n else 0.0


def _track(
    state: CapacityState,
    findings: list[Finding],
    snap: Snapshot,
    rules: CapacityRules,
    decisions: Decisions,
) -> CapacityState:
    """Count how long each condition holds; name it once it held ``sustain`` times."""
    now_found = {f.condition: f for f in findings}
    holds, misses, open_ = dict(state.holds), dict(state.misses), dict(state.open)
    for condition in set(holds) | set(now_found) | set(open_):
        if condition in now_found:
            holds[condition] = holds.get(condition, 0) + 1
            misses.pop(condition, None)
        else:
            holds.pop(condition, None)
            if condition in open_:
                misses[condition] = misses.get(condition, 0) + 1
                if misses[condition] >= rules.sustain:
                    del open_[condition]
                    del misses[condition]
    for condition, f in now_found.items():
        if holds[condition] >= rules.sustain and condition not in open_:
            first = (
                state.recent[-rules.sustain].start
                if len(state.recent) >= rules.sustain
                else snap.start
            )
            bid = stable_id("bottleneck", condition, int(first.timestamp() * 1000))
            open_[condition] = bid
            decisions.bottlenecks.append(_bottleneck(bid, f, first, snap))
    return state.model_copy(update={"holds": holds, "misses": misses, "open": open_})


def _test(
    state: CapacityState,
    snap: Snapshot,
    findings: list[Finding],
    rules: CapacityRules,
    decisions: Decisions,
) -> CapacityState:
    """Advance the trial under test by one snapshot."""
    trial = state.trial
    if trial is None:
        return state
    live = snap.applied.get(trial.key)
    if trial.applied_at is None:
        if live is not None and json.loads(live) == json.loads(trial.tested):
            return state.model_copy(
                update={"trial": trial.model_copy(update={"applied_at": snap.at})}
            )
        if snap.at - trial.proposed_at >= rules.apply_timeout:
            decisions.gave_up.append(trial.proposal_id)
            return state.model_copy(update={"trial": None})
        return state
    if trial.skipped < rules.settle:
        return state.model_copy(
            update={"trial": trial.model_copy(update={"skipped": trial.skipped + 1})}
        )
    held = any(_family(f.kind) == _family(trial.kind) for f in findings)
    after = (*trial.after, metric_of(snap, trial.metric))
    trial = trial.model_copy(update={"after": after, "cleared": trial.cleared and not held})
    if len(after) < rules.measure:
        return state.model_copy(update={"trial": trial})
    decisions.compared.append(_compare(trial, rules, snap.at))
    return state.model_copy(update={"trial": None, "quiet_until": snap.at + rules.cooldown})


def _family(kind: Kind) -> str:
    """Busy slots are one condition whether more slots or more workers would relieve it."""
    return "model_slots" if kind == "workers" else kind


def _compare(trial: Trial, rules: CapacityRules, now: datetime) -> PerformanceCompared:
    after = statistics.fmean(trial.after)
    before = trial.before
    if trial.higher_is_better:
        gain = (after - before) / before if before > 0 else (1.0 if after > 0 else 0.0)
    else:
        gain = (before - after) / before if before > 0 else 0.0
    keep = gain >= rules.min_gain or trial.cleared
    reason = (
        f"{trial.metric} {before:.4g} -> {after:.4g} ({gain:+.0%}); "
        f"the bottleneck {'cleared' if trial.cleared else 'still held'}: "
        + ("kept" if keep else f"rolled back (needs {rules.min_gain:+.0%} or clearing)")
    )
    assert trial.applied_at is not None
    return PerformanceCompared(
        event_id=stable_id(trial.proposal_id, "compared"),
        request_id=trial.proposal_id,
        occurred_at=now,
        proposal_id=trial.proposal_id,
        bottleneck_id=trial.bottleneck_id,
        key=trial.key,
        previous_value=trial.previous,
        tested_value=trial.tested,
        metric=trial.metric,
        before=round(before, 6),
        after=round(after, 6),
        cleared=trial.cleared,
        decision="keep" if keep else "rollback",
        reason=reason,
        applied_at=trial.applied_at,
    )


def _propose(
    state: CapacityState,
    snap: Snapshot,
    findings: list[Finding],
    rules: CapacityRules,
    decisions: Decisions,
) -> CapacityState:
    """Propose the change of the first named condition that has one, when no test runs."""
    if state.trial is not None or (state.quiet_until and snap.at < state.quiet_until):
        return state
    for f in findings:
        bid = state.open.get(f.condition)
        if bid is None or f.change is None or state.holds.get(f.condition, 0) < rules.sustain:
            continue
        key, value = f.change
        current = snap.applied.get(key)
        if current is None or current == value:
            continue
        window = state.recent[-rules.sustain :]
        before = statistics.fmean(metric_of(s, f.metric) for s in window)
        pid = stable_id("proposal", bid, key, value)
        if pid in state.tested:
            continue
        decisions.proposals.append(_proposal(pid, bid, f, key, current, value, snap))
        trial = Trial(
            proposal_id=pid,
            bottleneck_id=bid,
            kind=f.kind,
            subject=f.subject,
            key=key,
            previous=current,
            tested=value,
            metric=f.metric,
            higher_is_better=f.higher_is_better,
            before=before,
            proposed_at=snap.at,
        )
        tested = (*state.tested, pid)[-TESTED_KEPT:]
        return state.model_copy(update={"trial": trial, "tested": tested})
    return state


_KIND_OF_KEY: dict[str, ProposalKind] = {
    CONCURRENCY_KEY: "concurrency",
    GUARD_KEY: "lane_guard",
    WEIGHTS_KEY: "routing_weight",
    ROUNDS_KEY: "max_rounds",
}


def _proposal(
    pid: str, bid: str, f: Finding, key: str, current: str, value: str, snap: Snapshot
) -> ImprovementProposed:
    return ImprovementProposed(
        event_id=stable_id(pid, "event"),
        request_id=pid,
        occurred_at=snap.at,
        proposal_id=pid,
        diagnosis_id=bid,
        kind=_KIND_OF_KEY[key],
        key=key,
        current_value=current,
        proposed_value=value,
        rationale=f.why,
        expected_effect=(
            f"{f.metric} {'up' if f.higher_is_better else 'down'} by at least the before/after "
            f"test's gain, or the {f.kind} bottleneck cleared; rolled back otherwise"
        ),
        proposed_by=PROPOSER,
    )


def _bottleneck(bid: str, f: Finding, first: datetime, snap: Snapshot) -> BottleneckIdentified:
    return BottleneckIdentified(
        event_id=stable_id(bid, "event"),
        request_id=bid,
        occurred_at=snap.at,
        bottleneck_id=bid,
        kind=f.kind,
        subject=f.subject,
        metric=f.metric,
        observed=round(f.observed, 6),
        limit=round(f.limit, 6),
        window_start=first,
        window_end=snap.at,
        workers=snap.workers,
        recommended_workers=f.recommended_workers,
        summary=f.why,
    )


def _weights(snap: Snapshot) -> dict[str, float] | None:
    raw = snap.applied.get(WEIGHTS_KEY)
    if raw is None:
        return None
    weights = json.loads(raw)
    return {str(k): float(v) for k, v in weights.items()} if weights else None


def _int(raw: str | None) -> int | None:
    value = json.loads(raw) if raw is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def refold(
    reports: Sequence[WorkerLoadReported], rules: CapacityRules
) -> list[BottleneckIdentified | ImprovementProposed | PerformanceCompared]:
    """Every decision the optimizer made on ``reports``, in order (for replay)."""
    state = CapacityState()
    out: list[BottleneckIdentified | ImprovementProposed | PerformanceCompared] = []
    for report in reports:
        state, d = step(state, report, rules)
        out += [*d.bottlenecks, *d.proposals, *d.compared]
    return out
