"""When a task still waiting for its verdict is sent again: a share of the time its
request had left, with a floor and a cap, never past the request's deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.stall import StallPolicy, resend_due, stalled

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICY = StallPolicy(share=0.25, floor=timedelta(seconds=5), longest=timedelta(seconds=60))


@pytest.mark.parametrize(
    ("left_s", "wait_s"),
    [
        (120, 30),  # a share of the time left
        (400, 60),  # capped
        (12, 5),  # the floor
        (3, 3),  # never past the deadline
        (0, 0),
        (-10, -10),  # overdue: due at once
    ],
)
def test_the_wait_is_a_share_of_the_time_left(left_s: int, wait_s: int) -> None:
    deadline = T0 + timedelta(seconds=left_s)
    assert resend_due(T0, deadline, POLICY) == T0 + timedelta(seconds=wait_s)


def test_a_task_is_stalled_once_its_wait_is_over() -> None:
    deadline = T0 + timedelta(seconds=120)
    assert not stalled(T0, deadline, T0 + timedelta(seconds=29), POLICY)
    assert stalled(T0, deadline, T0 + timedelta(seconds=30), POLICY)


def test_a_resend_under_the_default_deadline_leaves_time_for_another_model_call() -> None:
    default_deadline_s, model_timeout_s = 120.0, 25.0
    due = resend_due(T0, T0 + timedelta(seconds=default_deadline_s), POLICY)
    assert (due - T0).total_seconds() + 2 * model_timeout_s < default_deadline_s


def test_a_request_without_a_known_deadline_waits_the_longest() -> None:
    assert not stalled(T0, None, T0 + timedelta(seconds=59), POLICY)
    assert stalled(T0, None, T0 + timedelta(seconds=60), POLICY)
