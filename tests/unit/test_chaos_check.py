"""The chaos checker (a pure function of what was sent, the topics and the model server's
count), the fault schedule and the model server's replies."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from schemas.request_events import DeadLettered, ResponseDelivered, TaskAssigned
from streams.chaos import schedule
from streams.chaos.check import Answer, Fault, Observed, check, percentile, round_gaps
from streams.chaos.model_server import OFF_TOPIC, QUESTIONS, TWICE, reply_to
from streams.chaos.schedule import FaultPlan, plan

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def response(
    rid: str, *, event_id: str = "", content: str = "ok", rounds: int = 1
) -> ResponseDelivered:
    return ResponseDelivered(
        event_id=event_id or f"final-{rid}",
        request_id=rid,
        occurred_at=T0,
        status="passed",
        content=content,
        rounds=rounds,
    )


def task(rid: str, round_: int, subtask: str = "main") -> TaskAssigned:
    return TaskAssigned(
        event_id=f"{rid}-{subtask}-{round_}",
        request_id=rid,
        occurred_at=T0,
        task_id=f"{rid}/{subtask}/{round_}",
        subtask=subtask,
        round=round_,
        specialist="general",
        deployment="primary",
        instruction="q",
        system_prompt="s",
    )


def letter() -> DeadLettered:
    return DeadLettered(
        event_id="d",
        request_id="x",
        occurred_at=T0,
        stage="intake",
        error_class="DecodeError",
        reason_code="bad",
        reason="bad",
        source_topic="t",
        source_partition=0,
        source_offset=1,
        payload=b"",
    )


def test_a_clean_run_has_nothing_to_report() -> None:
    seen = Observed(
        sent={"a": 0.0, "b": 1.0},
        answers=[Answer(response("a"), 0.5), Answer(response("b", rounds=2), 2.0)],
        tasks=[task("a", 1), task("b", 1), task("b", 2)],
        dead_letters=[],
        model_calls=3,
    )
    report = check(seen)
    assert report.ok
    assert report.last_line() == (
        "chaos: 2 requests, lost 0, conflicting 0, duplicate responses 0, "
        "extra model calls 0, round gaps 0"
    )
    assert report.statuses == {"passed": 2}
    assert report.latency_s["p100"] == 1.0


def test_losses_duplicates_conflicts_extra_calls_and_dead_letters_are_counted() -> None:
    seen = Observed(
        sent={"a": 0.0, "b": 0.0, "c": 0.0, "lost": 0.0},
        answers=[
            Answer(response("a"), 1.0),
            Answer(response("a"), 2.0),  # the same response again: a duplicate
            Answer(response("b"), 1.0),
            Answer(response("b", event_id="other", content="else"), 3.0),  # a conflict
            Answer(response("c"), 1.0),
            Answer(response("stranger"), 1.0),  # not sent by this run: ignored
        ],
        tasks=[task("a", 1), task("a", 1), task("b", 1), task("c", 1)],
        dead_letters=[letter()],
        model_calls=5,
    )
    report = check(seen)
    assert not report.ok
    assert (report.lost, report.duplicated, report.conflicting) == (["lost"], ["a", "b"], ["b"])
    assert report.extra_model_calls == 2  # three distinct tasks, five calls
    assert report.dead_letters == 1


def test_a_conflicting_resends_rejection_is_no_answer_to_its_request() -> None:
    rejection = ResponseDelivered(
        event_id="conflict-a",
        request_id="a",
        occurred_at=T0,
        status="rejected",
        reason_code="conflict",
        submission_id="resend-of-a",
    )
    seen = Observed(
        sent={"a": 0.0, "lost": 0.0},
        answers=[
            Answer(rejection, 0.2),  # before the request's own answer
            Answer(response("a"), 1.0),
            Answer(rejection, 1.5),  # and again after it
            Answer(rejection.model_copy(update={"request_id": "lost"}), 0.3),
        ],
        tasks=[task("a", 1)],
        dead_letters=[],
        model_calls=1,
    )
    report = check(seen)
    assert (report.lost, report.duplicated, report.conflicting) == (["lost"], [], [])
    assert report.statuses == {"passed": 1}
    assert report.latency_s["p100"] == 1.0


@pytest.mark.parametrize(
    ("rounds", "final_rounds", "gap"),
    [
        ([1, 2], 2, False),
        ([1, 3], 3, True),  # round 2 never assigned
        ([2], 2, True),
        ([1], 2, True),  # answered as round 2 with one round assigned
        ([1, 1, 2], 2, False),  # a re-sent task is no gap
    ],
)
def test_round_gaps(rounds: list[int], final_rounds: int, gap: bool) -> None:
    tasks = [task("r", n) for n in rounds]
    assert (round_gaps(tasks, [response("r", rounds=final_rounds)]) == ["r"]) is gap


def test_recovery_counts_from_the_end_of_a_fault_until_p99_is_back() -> None:
    sent = {f"r{i}": float(i) for i in range(60)}
    slow = {f"r{i}" for i in range(20, 28)}  # sent 20-27 s: slow; 28 s on: normal again
    answers = [
        Answer(response(rid), at + (10.0 if rid in slow else 0.5)) for rid, at in sent.items()
    ]
    fault = Fault(schedule.WORKER_KILL, started=20.0, ended=22.0)
    report = check(Observed(sent, answers, [], [], 0, [fault]))
    assert report.baseline_p99_s == 0.5
    assert [r.seconds for r in report.recoveries] == [6.0]


def test_a_fault_never_recovered_from_says_so() -> None:
    sent = {f"r{i}": float(i) for i in range(40)}
    answers = [Answer(response(rid), at + (0.5 if at < 20 else 9.0)) for rid, at in sent.items()]
    fault = Fault(schedule.WORKER_KILL, started=20.0, ended=21.0)
    [recovery] = check(Observed(sent, answers, [], [], 0, [fault])).recoveries
    assert recovery.seconds is None
    assert (recovery.had_s, recovery.before) == (18.0, "the end of the load")


def test_the_time_to_recover_in_ends_at_the_next_fault() -> None:
    sent = {f"r{i}": float(i) for i in range(60)}
    answers = [Answer(response(rid), at + (0.5 if at < 20 else 9.0)) for rid, at in sent.items()]
    first = Fault(schedule.WORKER_KILL, started=20.0, ended=31.0)
    second = Fault(schedule.WORKER_KILL, started=40.0, ended=52.0)
    report = check(Observed(sent, answers, [], [], 0, [second, first]))
    assert [(r.fault, r.seconds, r.had_s, r.before) for r in report.recoveries] == [
        (first, None, 9.0, "the next fault"),
        (second, None, 7.0, "the end of the load"),
    ]


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_the_schedule_kills_workers_within_the_range_and_places_broker_faults() -> None:
    faults = plan(FaultPlan(run_s=500.0, broker_faults=True))
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(faults)]
    assert faults[0].at_s == 30.0
    assert all(20.0 <= g <= 30.0 for g in gaps)
    assert faults[-1].at_s <= 480.0
    kinds = [f.kind for f in faults]
    assert kinds.count(schedule.BROKER_KILL) == kinds.count(schedule.BROKER_STOP) == 1
    assert kinds.index(schedule.BROKER_KILL) < kinds.index(schedule.BROKER_STOP)


def test_a_schedule_without_a_broker_of_its_own_only_kills_workers() -> None:
    faults = plan(
        FaultPlan(run_s=60.0, worker_kills=2, quiet_start_s=10.0, kill_every_s=(8.0, 9.0))
    )
    assert [f.kind for f in faults] == [schedule.WORKER_KILL] * 2


def test_the_model_answers_a_twice_prompt_off_topic_first_then_correctly() -> None:
    question, answer = QUESTIONS[1]
    first = {"messages": [{"role": "user", "content": f"{TWICE} {question}"}]}
    second = {"messages": [*first["messages"], {"role": "assistant", "content": OFF_TOPIC}]}
    assert reply_to(first) == OFF_TOPIC
    assert reply_to(second) == answer
    assert reply_to({"messages": [{"role": "user", "content": question}]}) == answer
