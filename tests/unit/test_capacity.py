"""The system optimizer's pure core: bottlenecks named once per incident, one change
proposed at a time, and the before/after test keeping or rolling it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.capacity import (
    CONCURRENCY_KEY,
    GUARD_KEY,
    ROUNDS_KEY,
    WEIGHTS_KEY,
    CapacityRules,
    CapacityState,
    Decisions,
    refold,
    step,
)
from schemas.network_events import (
    BottleneckIdentified,
    DeploymentLoad,
    ImprovementProposed,
    LaneLoad,
    PerformanceCompared,
    WorkerLoadReported,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVERY = timedelta(seconds=10)
RULES = CapacityRules(report_every=EVERY, sustain=3, settle=1, measure=2)
APPLIED = {
    CONCURRENCY_KEY: "null",
    GUARD_KEY: "null",
    WEIGHTS_KEY: "{}",
    ROUNDS_KEY: "3",
}


def report(
    n: int,
    *,
    worker: str = "w1",
    slots: int = 2,
    ceiling: int = 16,
    busy: float = 0.5,
    lag: int = 0,
    granted: int = 100,
    lanes: dict[str, tuple[int, int, float]] | None = None,
    deployments: dict[str, tuple[int, float]] | None = None,
    guard: int = 8,
    p95: float = 500.0,
    rounds: float = 1.0,
    applied: dict[str, str] | None = None,
) -> WorkerLoadReported:
    """The ``n``-th report of a worker: window [n*EVERY, (n+1)*EVERY)."""
    lane_loads = lanes or {"high": (0, 0, 0.0), "normal": (lag, granted, 5.0), "low": (0, 0, 0.0)}
    return WorkerLoadReported(
        event_id=f"{worker}-{n}",
        request_id=worker,
        occurred_at=T0 + (n + 1) * EVERY,
        worker=worker,
        window_start=T0 + n * EVERY,
        window_end=T0 + (n + 1) * EVERY,
        slots=slots,
        slots_ceiling=ceiling,
        busy_share=busy,
        guard_every=guard,
        partitions=6,
        lanes=tuple(
            LaneLoad(lane=k, lag=v[0], granted=v[1], wait_ms=v[2]) for k, v in lane_loads.items()
        ),
        deployments=tuple(
            DeploymentLoad(deployment=d, calls=c, mean_latency_ms=ms)
            for d, (c, ms) in (deployments or {"fake": (granted, 100.0)}).items()
        ),
        responses=granted,
        p95_latency_ms=p95,
        mean_rounds=rounds,
        applied={**APPLIED, **(applied or {})},
    )


def fold(
    reports: list[WorkerLoadReported], state: CapacityState | None = None
) -> tuple[CapacityState, list[Decisions]]:
    state = state or CapacityState()
    out = []
    for r in reports:
        state, d = step(state, r, RULES)
        out.append(d)
    return state, out


def saturated(n: int, *, slots: int = 2, lag: int = 0, **kw: object) -> WorkerLoadReported:
    return report(n, slots=slots, busy=0.97, lag=lag or 50 * (n + 1), granted=200, **kw)  # type: ignore[arg-type]


def test_busy_slots_with_a_growing_backlog_are_named_once_and_get_more_slots() -> None:
    state, ds = fold([saturated(n) for n in range(5)])
    bottlenecks = [b for d in ds for b in d.bottlenecks]
    proposals = [p for d in ds for p in d.proposals]
    assert [b.kind for b in bottlenecks] == ["model_slots"]
    assert bottlenecks[0].window_start == T0
    assert bottlenecks[0].workers == 1
    # 20 tasks a second granted, which is all 2 slots serve at 100 ms a call.
    assert (bottlenecks[0].observed, bottlenecks[0].limit) == (20.0, 20.0)
    assert len(proposals) == 1
    assert ds[2].proposals == proposals
    p = proposals[0]
    assert (p.key, p.kind, p.current_value) == (CONCURRENCY_KEY, "concurrency", "null")
    assert 2 < int(p.proposed_value) <= 4  # more slots, at most doubled
    assert p.diagnosis_id == bottlenecks[0].bottleneck_id
    assert state.trial is not None
    assert state.trial.before == 20.0


def test_a_spike_shorter_than_the_sustain_is_no_bottleneck() -> None:
    reports = [report(0), saturated(1), saturated(2), report(3), report(4)]
    _, ds = fold(reports)
    assert not any(d.bottlenecks or d.proposals for d in ds)


def test_busy_slots_without_a_backlog_are_no_bottleneck() -> None:
    _, ds = fold([report(n, busy=0.99, lag=0) for n in range(6)])
    assert not any(d.bottlenecks for d in ds)


def _through_trial(after: list[WorkerLoadReported]) -> list[PerformanceCompared]:
    state, _ = fold([saturated(n) for n in range(3)])
    assert state.trial is not None
    state, ds = fold(after, state)
    return [c for d in ds for c in d.compared]


def test_a_change_that_raises_throughput_is_kept() -> None:
    tested = {CONCURRENCY_KEY: "4"}
    after = [
        saturated(3, slots=2),  # not applied yet
        saturated(4, slots=4, applied=tested),  # applied: this snapshot starts the trial
        saturated(5, slots=4, applied=tested),  # settle
        report(6, slots=4, busy=0.97, lag=300, granted=380, applied=tested),
        report(7, slots=4, busy=0.97, lag=200, granted=390, applied=tested),
    ]
    [compared] = _through_trial(after)
    assert compared.decision == "keep"
    assert (compared.before, compared.after) == (20.0, 38.5)
    assert compared.previous_value == "null"
    assert compared.tested_value == "4"
    assert compared.applied_at == T0 + 5 * EVERY


def test_a_change_that_changes_nothing_is_rolled_back() -> None:
    tested = {CONCURRENCY_KEY: "4"}
    after = [saturated(n, slots=4, applied=tested) for n in range(3, 7)]
    [compared] = _through_trial(after)
    assert compared.decision == "rollback"
    assert not compared.cleared
    assert "rolled back" in compared.reason


def test_a_cleared_bottleneck_keeps_the_change_even_without_more_throughput() -> None:
    tested = {CONCURRENCY_KEY: "4"}
    after = [report(n, slots=4, busy=0.4, lag=0, granted=200, applied=tested) for n in range(3, 7)]
    [compared] = _through_trial(after)
    assert compared.decision == "keep"
    assert compared.cleared


def test_a_proposal_never_applied_is_given_up_and_not_proposed_again() -> None:
    rules = CapacityRules(report_every=EVERY, sustain=3, apply_timeout=timedelta(seconds=30))
    state, gave_up, proposals = CapacityState(), [], []
    for n in range(12):
        state, d = step(state, saturated(n), rules)
        gave_up += d.gave_up
        proposals += d.proposals
    assert len(gave_up) == 1
    assert [p.proposal_id for p in proposals] == gave_up


def test_at_the_ceiling_only_a_worker_count_is_recommended() -> None:
    _, ds = fold([saturated(n, slots=16) for n in range(4)])
    assert ds[0].recommended_workers == ds[-1].recommended_workers
    assert ds[0].recommended_workers is not None
    assert ds[0].recommended_workers > 1, "recommended from the first busy snapshot on"
    _, quiet = fold([report(n) for n in range(2)])
    assert [d.recommended_workers for d in quiet] == [1, 1], "no more than the live ones"
    [b] = [b for d in ds for b in d.bottlenecks]
    assert b.kind == "workers"
    assert 1 < b.recommended_workers <= 6
    assert not any(d.proposals for d in ds)


def test_a_slow_deployment_loses_half_its_traffic_share() -> None:
    weights = {WEIGHTS_KEY: '{"fast": 0.5, "slow": 0.5}'}
    deps = {"fast": (50, 100.0), "slow": (50, 900.0)}
    _, ds = fold([report(n, deployments=deps, applied=weights) for n in range(3)])
    [p] = [p for d in ds for p in d.proposals]
    assert (p.key, p.kind) == (WEIGHTS_KEY, "routing_weight")
    assert p.proposed_value == '{"fast": 0.5, "slow": 0.25}'


def test_without_routing_weights_a_slow_deployment_has_no_share_to_move() -> None:
    deps = {"fast": (50, 100.0), "slow": (50, 900.0)}
    _, ds = fold([report(n, deployments=deps) for n in range(4)])
    assert not any(d.proposals or d.bottlenecks for d in ds)


def test_a_starved_low_lane_gets_a_tighter_guard() -> None:
    lanes = {"high": (5, 150, 20.0), "normal": (0, 40, 50.0), "low": (30, 10, 4000.0)}
    _, ds = fold([report(n, lanes=lanes) for n in range(3)])
    [p] = [p for d in ds for p in d.proposals]
    assert (p.key, p.proposed_value, p.kind) == (GUARD_KEY, "4", "lane_guard")
    [b] = [b for d in ds for b in d.bottlenecks]
    assert (b.kind, b.subject, b.metric) == ("starved_lane", "low", "lane_wait_ms:low")


def test_latency_over_budget_with_many_rounds_proposes_a_round_fewer() -> None:
    _, ds = fold([report(n, p95=45_000.0, rounds=2.2) for n in range(3)])
    [p] = [p for d in ds for p in d.proposals]
    assert (p.key, p.current_value, p.proposed_value) == (ROUNDS_KEY, "3", "2")


def test_an_open_breaker_stops_all_findings() -> None:
    r = saturated(0)
    broken = r.deployments[0].model_copy(update={"breaker": "open"})
    reports = [saturated(n).model_copy(update={"deployments": (broken,)}) for n in range(4)]
    _, ds = fold(reports)
    assert not any(d.bottlenecks for d in ds)


def test_a_silent_worker_leaves_the_snapshot() -> None:
    reports = [saturated(0, worker="w1"), saturated(0, worker="w2")]
    reports += [saturated(n, worker="w1") for n in range(1, 6)]
    state, _ = fold(reports)
    assert set(state.reports) == {"w1"}


def test_refold_re_derives_the_same_decisions_in_order() -> None:
    tested = {CONCURRENCY_KEY: "4"}
    reports = [saturated(n) for n in range(3)] + [
        saturated(n, slots=4, applied=tested) for n in range(3, 8)
    ]
    first = refold(reports, RULES)
    assert [type(e) for e in first] == [
        BottleneckIdentified,
        ImprovementProposed,
        PerformanceCompared,
    ]
    assert refold(reports, RULES) == first
