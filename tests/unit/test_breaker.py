"""The circuit breaker state machine: every transition, the sliding window, health."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from agents.breaker import (
    BreakerPolicy,
    BreakerState,
    allow,
    health,
    record,
    stats,
)

POLICY = BreakerPolicy()


def replay(state: BreakerState, outcomes: Iterable[tuple[float, bool]]) -> BreakerState:
    """Admit and record each ``(now, ok)`` call in turn, as a caller would."""
    for now, ok in outcomes:
        allowed, state = allow(state, now)
        assert allowed, f"call at {now} refused in mode {state.mode}"
        state = record(state, now, ok)
    return state


def failures(*times: float) -> list[tuple[float, bool]]:
    return [(t, False) for t in times]


def opened_at(now: float, policy: BreakerPolicy = POLICY) -> BreakerState:
    state = replay(BreakerState(policy), failures(*(now - 0.4 + 0.1 * i for i in range(4)), now))
    assert state.mode == "open"
    assert state.since == now
    return state


def half_open(policy: BreakerPolicy = POLICY) -> BreakerState:
    state = opened_at(100.0, policy)
    allowed, state = allow(state, 100.0 + policy.open_s)
    assert allowed
    assert state.mode == "half_open"
    return state


def test_defaults() -> None:
    assert (POLICY.window_s, POLICY.consecutive_failures, POLICY.min_calls) == (30.0, 5, 10)
    assert (POLICY.error_rate, POLICY.open_s, POLICY.half_open_probes) == (0.5, 15.0, 1)


def test_closed_allows_and_stays_closed_on_successes() -> None:
    state = replay(BreakerState(POLICY), [(float(t), True) for t in range(50)])
    assert state.mode == "closed"
    assert allow(state, 50.0) == (True, state)


@pytest.mark.parametrize(
    ("outcomes", "mode"),
    [
        (failures(1, 2, 3, 4), "closed"),
        (failures(1, 2, 3, 4, 5), "open"),  # five consecutive failures
        (failures(0, 10, 20, 29, 30), "open"),  # the streak fits in the window
        (failures(0, 10, 20, 30, 40), "closed"),  # it does not: 40 s from first to last
        ([*failures(1, 2, 3, 4), (5, True), *failures(6, 7, 8, 9)], "closed"),  # reset
    ],
)
def test_consecutive_failures_within_the_window_open_it(
    outcomes: list[tuple[float, bool]], mode: str
) -> None:
    assert replay(BreakerState(POLICY), outcomes).mode == mode


def alternating(calls: int, start: float = 0.0) -> list[tuple[float, bool]]:
    """``calls`` calls 0.1 s apart, failing every other one (first fails): no streak."""
    return [(start + 0.1 * i, i % 2 == 1) for i in range(calls)]


@pytest.mark.parametrize(
    ("outcomes", "mode"),
    [
        (alternating(9), "closed"),  # 5 of 9 failed, but fewer than min_calls
        (alternating(10), "open"),  # 5 of 10: 50 %
        ([*alternating(8), (0.8, True), (0.9, True)], "closed"),  # 4 of 10: 40 %
        ([*alternating(9), (40.0, False)], "closed"),  # the first nine left the window
    ],
)
def test_error_rate_over_min_calls_opens_it(outcomes: list[tuple[float, bool]], mode: str) -> None:
    assert replay(BreakerState(POLICY), outcomes).mode == mode


def test_open_refuses_until_open_s_has_passed() -> None:
    state = opened_at(100.0)
    assert allow(state, 100.0) == (False, state)
    assert allow(state, 114.99) == (False, state)
    allowed, after = allow(state, 115.0)
    assert allowed
    assert (after.mode, after.since, after.probes) == ("half_open", 115.0, 1)


def test_half_open_admits_only_its_probes() -> None:
    state = half_open()
    assert allow(state, 115.5) == (False, state)
    two = half_open(BreakerPolicy(half_open_probes=2))
    allowed, two = allow(two, 115.5)
    assert allowed
    assert two.probes == 2
    assert allow(two, 115.6)[0] is False


def test_a_probe_success_closes_it_with_a_fresh_window() -> None:
    state = record(half_open(), 115.2, ok=True)
    assert state.mode == "closed"
    counts = stats(state, 115.2)
    assert (counts.calls, counts.failures, counts.last_success_at) == (1, 0, 115.2)
    # The failures that opened it are forgotten: one new failure does not re-open it.
    assert replay(state, failures(116.0)).mode == "closed"


def test_a_probe_failure_reopens_it_for_another_open_s() -> None:
    state = record(half_open(), 115.25, ok=False)
    assert (state.mode, state.since) == ("open", 115.25)
    assert allow(state, 130.0)[0] is False
    assert allow(state, 130.25)[0] is True


def test_a_lost_probe_is_replaced_after_open_s() -> None:
    state = half_open()  # the probe was admitted at 115 and never reported back
    assert allow(state, 129.9)[0] is False
    allowed, state = allow(state, 130.0)
    assert allowed
    assert (state.mode, state.since, state.probes) == ("half_open", 130.0, 1)


def test_a_straggler_finishing_while_open_changes_nothing_but_counts() -> None:
    state = opened_at(100.0)
    late_failure = record(state, 110.0, ok=False)
    assert (late_failure.mode, late_failure.since) == ("open", 100.0)
    late_success = record(state, 110.0, ok=True)
    assert (late_success.mode, late_success.since) == ("open", 100.0)
    assert late_success.last_success_at == 110.0
    assert stats(late_failure, 110.0).failures == 6


def test_states_are_immutable_values() -> None:
    start = BreakerState(POLICY)
    after = record(start, 1.0, ok=False)
    assert stats(start, 1.0).calls == 0
    assert stats(after, 1.0).calls == 1
    assert replay(BreakerState(POLICY), alternating(10)) == replay(
        BreakerState(POLICY), alternating(10)
    )


def test_stats_slide_with_the_window() -> None:
    state = replay(BreakerState(POLICY), [(1.0, True), (2.0, False), (20.0, True), (21.0, False)])
    early = stats(state, 21.0)
    assert (early.calls, early.failures, early.error_rate) == (4, 2, 0.5)
    assert early.last_success_at == 20.0
    late = stats(state, 45.0)  # the calls at 1 s and 2 s have left the window
    assert (late.calls, late.failures, late.error_rate) == (2, 1, 0.5)
    gone = stats(state, 100.0)
    assert (gone.calls, gone.failures, gone.error_rate) == (0, 0, 0.0)
    assert gone.last_success_at == 20.0


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], "healthy"),
        ([(float(t), True) for t in range(10)], "healthy"),
        ([*[(float(t), True) for t in range(19)], (19.0, False)], "healthy"),  # 5 %
        ([*[(float(t), True) for t in range(9)], (9.0, False)], "degraded"),  # 10 %
        (alternating(9), "degraded"),
        (failures(1, 2, 3, 4, 5), "down"),
    ],
)
def test_health_from_the_breaker(outcomes: list[tuple[float, bool]], expected: str) -> None:
    state = replay(BreakerState(POLICY), outcomes)
    assert health(state, 20.0) == expected


def test_half_open_is_degraded() -> None:
    assert health(half_open(), 115.0) == "degraded"
